"""The image entry point's settings, read once, and the builder they pick."""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from trainship.config import DEFAULT_BASE_IMAGE, ImageSettings
from trainship.errors import ImageBuildFailed
from trainship.image import image_builder
from trainship.image.bundle import BundleBuilder
from trainship.image.context import service_requirements
from trainship.image.docker import DockerBuilder
from trainship.image.podman import PodmanBuilder
from trainship.serving import REQUIREMENTS

IMAGE_VARIABLES = ("TRAINSHIP_CLUSTER_ARCH", "TRAINSHIP_IMAGE_BUILDERS",
                   "TRAINSHIP_IMAGE_BUILDER", "TRAINSHIP_REGISTRY",
                   "TRAINSHIP_IMAGE_REPOSITORY", "MLFLOW_TRACKING_URI", "TRAINSHIP_BASE_IMAGE",
                   "TRAINSHIP_IMAGE_WHEELS", "TRAINSHIP_HOME", "TRAINSHIP_BUILDKIT_IMAGE")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in IMAGE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_without_a_variable(clean_env: pytest.MonkeyPatch) -> None:
    settings = ImageSettings.from_env()
    assert settings == ImageSettings()
    assert settings.builder_for("podman") == "bundle"
    assert settings.registry == Path("registry") and settings.home == Path(".trainship")
    assert settings.image_repository == "local" and settings.cluster_arch == "amd64"
    assert settings.base_image == DEFAULT_BASE_IMAGE


def test_every_variable_is_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {"TRAINSHIP_CLUSTER_ARCH": "arm64",
              "TRAINSHIP_IMAGE_BUILDERS": "process=bundle,,podman=podman,nonsense",
              "TRAINSHIP_IMAGE_BUILDER": "docker", "TRAINSHIP_REGISTRY": str(tmp_path / "r"),
              "TRAINSHIP_IMAGE_REPOSITORY": "127.0.0.1:5000/m",
              "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "TRAINSHIP_BASE_IMAGE": "b:1",
              "TRAINSHIP_IMAGE_WHEELS": "host", "TRAINSHIP_HOME": str(tmp_path / "h"),
              "TRAINSHIP_BUILDKIT_IMAGE": "k:1"}
    for name, value in values.items():
        clean_env.setenv(name, value)
    assert ImageSettings.from_env() == ImageSettings(
        tracking_uri="http://127.0.0.1:5000",
        builders=(("process", "bundle"), ("podman", "podman")), default_builder="docker",
        registry=tmp_path / "r", image_repository="127.0.0.1:5000/m", base_image="b:1",
        cluster_arch="arm64", wheels="host", buildkit_image="k:1", home=tmp_path / "h")
    # an empty architecture is the default one, as before
    clean_env.setenv("TRAINSHIP_CLUSTER_ARCH", "")
    assert ImageSettings.from_env().cluster_arch == "amd64"


@pytest.mark.parametrize(("target", "kind"), [("process", BundleBuilder),
                                              ("podman", PodmanBuilder),
                                              ("kubernetes", DockerBuilder),
                                              ("", DockerBuilder)])
def test_the_builder_follows_the_target(target: str, kind: type) -> None:
    settings = ImageSettings(builders=(("process", "bundle"), ("podman", "podman")),
                             default_builder="docker")
    builder = image_builder(settings, target)
    assert isinstance(builder, kind)
    assert builder.name == {BundleBuilder: "bundle", PodmanBuilder: "podman",
                            DockerBuilder: "docker"}[kind]


def test_an_unknown_builder_is_an_image_build_failure() -> None:
    with pytest.raises(ImageBuildFailed) as caught:
        image_builder(ImageSettings(default_builder="kaniko"))
    assert "kaniko" in caught.value.message
    assert caught.value.step == "BuildImage"
    assert "docker, podman or bundle" in caught.value.help


def test_the_bundle_builder_pushes_into_the_registry_directory(tmp_path: Path) -> None:
    context = tmp_path / "context"
    (context / "model").mkdir(parents=True)
    (context / "model" / "MLmodel").write_text("flavors: {}\n")
    registry = tmp_path / "registry"
    uri = image_builder(ImageSettings(registry=registry)).push(context, "iris-v1")
    assert uri.startswith(f"{registry}/trainship-models:iris-v1@sha256:")
    digest = uri.rpartition("@sha256:")[2]
    assert (registry / "trainship-models" / "tags" / "iris-v1").read_text() == digest
    assert (registry / "trainship-models" / "sha256" / digest / "model" / "MLmodel").exists()


def test_the_services_requirements_are_pinned_to_the_installed_versions() -> None:
    """make venv and the buildspecs install from requirements.lock: the installed version
    is the locked one (tests/unit/test_lock.py)."""
    pinned = service_requirements()
    assert len(pinned) == len(REQUIREMENTS)
    for line, wanted in zip(pinned, REQUIREMENTS, strict=True):
        requirement = Requirement(line)
        assert str(requirement.specifier) == f"=={metadata.version(requirement.name)}"
        assert Requirement(wanted).specifier.contains(metadata.version(requirement.name))


def test_a_service_requirement_that_is_not_installed_stays_as_written(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trainship.image.context.SERVICE_REQUIREMENTS",
                        ("prometheus-client>=0.20", "no-such-distribution-here>=1"))
    installed = metadata.version("prometheus-client")
    assert service_requirements() == [f"prometheus-client=={installed}",
                                      "no-such-distribution-here>=1"]


FAKE_PODMAN = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_PODMAN_LOG"], "a") as log:
    log.write(json.dumps({"args": args, "conf": os.environ.get("CONTAINERS_CONF", "")}) + "\\n")
if args[0] == "push":
    with open(args[args.index("--digestfile") + 1], "w") as out:
        out.write("sha256:" + "cd" * 32 + "\\n")
"""


def test_podman_builds_then_pushes_to_a_local_registry_without_tls(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("podman", "buildah", "docker-registry", "debootstrap", "catatonit"):
        (bin_dir / tool).write_text(FAKE_PODMAN if tool == "podman" else "#!/bin/sh\n")
        (bin_dir / tool).chmod(0o755)
    log = tmp_path / "podman.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PODMAN_LOG", str(log))
    context = tmp_path / "context"
    (context / "model").mkdir(parents=True)
    (context / "model" / "requirements.txt").write_text("mlflow==3.17.2\n")
    settings = ImageSettings(default_builder="podman", cluster_arch="arm64",
                             image_repository="127.0.0.1:5000/trainship-models",
                             base_image="python:3.11-slim", home=tmp_path / "home")
    uri = image_builder(settings).push(context, "iris-v2")
    reference = "127.0.0.1:5000/trainship-models:iris-v2"
    assert uri == f"{reference}@sha256:{'cd' * 32}"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    build, push = (call["args"] for call in calls)
    assert build[0] == "build"
    assert build[build.index("--platform") + 1] == "linux/arm64"
    assert "BASE_IMAGE=python:3.11-slim" in build and build[-1] == str(context)
    assert build[build.index("-t") + 1] == reference
    assert push[:3] == ["push", "--quiet", "--tls-verify=false"] and push[-1] == reference
    # every podman call runs with the stack's containers.conf
    assert {call["conf"] for call in calls} == {
        str(tmp_path / "home" / "containers" / "containers.conf")}
    assert (context / "Dockerfile").exists() and (context / "requirements.txt").exists()
