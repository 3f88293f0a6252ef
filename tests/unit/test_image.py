"""The image context: the model's requirements become the serving venv's."""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from trainship.config import ImageSettings
from trainship.errors import ImageBuildFailed
from trainship.image import main
from trainship.image.container import cluster_arch
from trainship.image.context import serving_requirements
from trainship.image.docker import DockerBuilder, dependency_key
from trainship.image.podman import PodmanBuilder


def test_mlflow_becomes_skinny_and_pins_stay(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "mlflow==3.17.2\ncloudpickle==3.1.1\n# a comment\nscikit-learn==1.9.1\n"
        "pandas==3.1.1\n")
    assert serving_requirements(tmp_path) == [
        "mlflow-skinny==3.17.2", "cloudpickle==3.1.1", "scikit-learn==1.9.1",
        "pandas==3.1.1", "numpy", "prometheus-client==0.26.0"]


def test_pyfunc_only_model_gets_what_scoring_imports(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("mlflow[extras]==3.17.2\ncloudpickle==3.1.1\n")
    assert serving_requirements(tmp_path) == [
        "mlflow-skinny==3.17.2", "cloudpickle==3.1.1", "numpy", "pandas",
        "prometheus-client==0.26.0"]


def test_builder_follows_the_target(monkeypatch) -> None:
    monkeypatch.setenv("TRAINSHIP_IMAGE_BUILDERS", "process=bundle,podman=podman")
    monkeypatch.setenv("TRAINSHIP_IMAGE_BUILDER", "docker")
    builder_for = ImageSettings.from_env().builder_for
    assert builder_for("podman") == "podman"
    assert builder_for("process") == "bundle"
    assert builder_for("") == "docker"


# --- the build command line (issue 10 items 13 and 18) -------------------------------

FAKE_DOCKER = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["buildx", "inspect"]:
    sys.exit(1)  # no such builder yet
if args[:2] == ["buildx", "build"]:
    path = args[args.index("--metadata-file") + 1]
    with open(path, "w") as out:
        json.dump({"containerimage.digest": "sha256:" + "ab" * 32,
                   "image.name": args[args.index("-t") + 1]}, out)
"""


def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    return log


def docker_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[list[str]]]:
    log = fake_docker(tmp_path, monkeypatch)
    context = tmp_path / "context"
    (context / "model").mkdir(parents=True)
    settings = replace(ImageSettings.from_env(), default_builder="docker",
                       image_repository="registry.example.com/trainship-models",
                       base_image="python:3.11-slim", wheels="", home=tmp_path)
    uri = DockerBuilder(settings).push(context, "churn-v3")
    return uri, [json.loads(line) for line in log.read_text().splitlines()]


def test_docker_keeps_every_stage_in_a_registry_cache(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The inline cache (BUILDKIT_INLINE_CACHE=1) exports min mode only: the stage that
    installs the model's dependencies was never cached. A registry cache in mode=max, in
    a buildcache-<key> tag of the repository, stored as an OCI image manifest as ECR wants
    it."""
    monkeypatch.delenv("TRAINSHIP_CLUSTER_ARCH", raising=False)
    monkeypatch.delenv("TRAINSHIP_BUILDKIT_IMAGE", raising=False)
    uri, calls = docker_build(tmp_path, monkeypatch)
    assert uri == "registry.example.com/trainship-models:churn-v3@sha256:" + "ab" * 32
    # a docker-container builder: the default docker driver cannot export a registry cache
    assert calls[0] == ["buildx", "inspect", "trainship"]
    assert calls[1] == ["buildx", "create", "--name", "trainship", "--driver",
                        "docker-container", "--bootstrap"]
    build = calls[2]
    assert build[:4] == ["buildx", "build", "--builder", "trainship"]
    # the cache of this dependency set (requirements, base, pip options, platform)
    key = dependency_key(tmp_path / "context", base_image="python:3.11-slim",
                         pip_options="", arch="amd64")
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    cache = f"registry.example.com/trainship-models:buildcache-{key}"
    assert build[build.index("--cache-from") + 1] == f"type=registry,ref={cache}"
    cache_to = build[build.index("--cache-to") + 1].split(",")
    assert cache_to[:2] == ["type=registry", f"ref={cache}"]
    assert {"mode=max", "image-manifest=true", "oci-mediatypes=true"} <= set(cache_to)
    assert "ignore-error=true" in cache_to  # a failed cache export does not fail the build
    assert "--push" in build
    # one manifest per image: no attestation index whose parts ECR's lifecycle could expire
    assert "--provenance=false" in build and "--sbom=false" in build
    assert not any("BUILDKIT_INLINE_CACHE" in arg for arg in build)
    assert build[build.index("-t") + 1] == "registry.example.com/trainship-models:churn-v3"
    assert len(calls) == 3  # buildx pushed the image; no separate push or inspect


def test_the_cache_is_keyed_by_the_dependencies_not_the_model(tmp_path: Path) -> None:
    """A new version of a model with the same requirements finds the venv layer its
    previous build cached (another model built in between has its own cache tag); other
    requirements, base, pip options or platform are another cache."""
    def key(requirements: str, wheels: dict[str, bytes] | None = None,
            **inputs: str) -> str:
        context = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
        (context / "wheels").mkdir(parents=True)
        (context / "model").mkdir()
        (context / "model" / "model.pkl").write_bytes(os.urandom(64))  # not part of the key
        (context / "requirements.txt").write_text(requirements)
        for name, data in (wheels or {}).items():
            (context / "wheels" / name).write_bytes(data)
        arguments = {"base_image": "python:3.11-slim", "pip_options": "", "arch": "amd64",
                     **inputs}
        return dependency_key(context, **arguments)

    same = key("mlflow-skinny==3.17.2\nscikit-learn==1.9.1\n")
    assert key("mlflow-skinny==3.17.2\nscikit-learn==1.9.1\n") == same
    assert key("mlflow-skinny==3.17.2\nscikit-learn==1.9.0\n") != same
    assert key("mlflow-skinny==3.17.2\nscikit-learn==1.9.1\n", arch="arm64") != same
    assert key("mlflow-skinny==3.17.2\nscikit-learn==1.9.1\n",
               base_image="python:3.12-slim") != same
    assert key("mlflow-skinny==3.17.2\nscikit-learn==1.9.1\n",
               pip_options="--no-index") != same
    assert key("mlflow-skinny==3.17.2\nscikit-learn==1.9.1\n",
               wheels={"x-1.0-py3-none-any.whl": b"1"}) != same


def test_buildkit_image_can_come_from_elsewhere(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/buildkit:v0.21.1"
    monkeypatch.setenv("TRAINSHIP_BUILDKIT_IMAGE", mirror)
    _, calls = docker_build(tmp_path, monkeypatch)
    create = calls[1]
    assert create[create.index("--driver-opt") + 1] == f"image={mirror}"


@pytest.mark.parametrize(("arch", "platform"), [(None, "linux/amd64"),
                                                ("arm64", "linux/arm64")])
def test_images_are_built_for_the_cluster_architecture(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arch: str | None, platform: str
) -> None:
    if arch is None:
        monkeypatch.delenv("TRAINSHIP_CLUSTER_ARCH", raising=False)
    else:
        monkeypatch.setenv("TRAINSHIP_CLUSTER_ARCH", arch)
    _, calls = docker_build(tmp_path, monkeypatch)
    build = calls[-1]
    assert build[build.index("--platform") + 1] == platform
    podman = PodmanBuilder(ImageSettings.from_env()).command(
        tmp_path, reference="r:t", base_image="b", pip_options="",
        arch=cluster_arch(ImageSettings.from_env().cluster_arch))
    assert podman[:2] == ["podman", "build"]
    assert podman[podman.index("--platform") + 1] == platform


def test_unknown_architecture_is_an_image_build_failure(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    monkeypatch.setenv("TRAINSHIP_CLUSTER_ARCH", "x86")
    with pytest.raises(ImageBuildFailed) as caught:
        cluster_arch(ImageSettings.from_env().cluster_arch)
    assert "amd64" in caught.value.help and "arm64" in caught.value.help


@pytest.mark.parametrize("argv", [[], ["biuld"], ["build", "extra"]])
def test_the_image_step_refuses_commands_it_does_not_have(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
