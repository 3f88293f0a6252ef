"""The image step that buildspecs/image.yml calls: ``python -m trainship.image build``.

It assembles the image context (the registered model downloaded from MLflow, its
requirements, the inference service, the multi-stage Dockerfile), builds it, pushes the tag
``<model>-v<version>`` and prints the image URI pinned by digest. The builder follows the
deployment's target (``TRAINSHIP_IMAGE_BUILDERS``, e.g. ``process=bundle,podman=podman``;
``TRAINSHIP_IMAGE_BUILDER`` otherwise):

- ``docker`` / ``podman``: ``<builder> build`` of trainship/image_files/Dockerfile on
  ``TRAINSHIP_BASE_IMAGE`` (``debootstrap:bookworm`` = the locally made base image) for
  ``linux/<TRAINSHIP_CLUSTER_ARCH>`` (amd64 unless set), pushed to the repository
  ``TRAINSHIP_IMAGE_REPOSITORY`` (ECR: logged in with the build role's credentials; docker
  keeps every stage's layers in the repository's ``buildcache`` tag, a BuildKit registry
  cache in mode=max, built by a docker-container buildx builder running
  ``TRAINSHIP_BUILDKIT_IMAGE`` when set; ``local``: the local registry).
  ``TRAINSHIP_IMAGE_WHEELS=host`` downloads the model's wheels on the build host and
  installs them with ``--no-index`` (no package index inside the build).
- ``bundle``: the context as a content-addressed directory under ``TRAINSHIP_REGISTRY``
  (the local process mode's ECR).

On failure it stages an ImageBuildFailed error document and exits 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from trainship import containers, staging
from trainship.bundles import push_bundle
from trainship.errors import ImageBuildFailed, TrainshipError, tail
from trainship.names import serving_name
from trainship.serving import REQUIREMENTS as SERVICE_REQUIREMENTS
from trainship.state import DeploymentState

STEP = "BuildImage"
METADATA = "trainship-image.json"
REPOSITORY = "trainship-models"
IMAGE_FILES = Path(__file__).resolve().parent / "image_files"
SERVICE_MODULES = ("__init__.py", "serving/*.py")  # the service imports nothing else
PYFUNC_SERVING_NEEDS = ("numpy", "pandas")
DEFAULT_ARCH = "amd64"
ARCHITECTURES = ("amd64", "arm64")
DOCKER_BUILDER = "trainship"  # the docker-container buildx builder
DOCKER_METADATA = "buildx-metadata.json"
ECR_HOST = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


def image_tag(model_name: str, version: str) -> str:
    """``<serving name>-v<version>``: an image tag allows no upper case (trainship.names)."""
    return f"{serving_name(model_name)}-v{version}"


def assemble_context(state: DeploymentState, tracking_uri: str, context: Path) -> None:
    import mlflow
    from mlflow.artifacts import download_artifacts

    assert state.model is not None
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    model_dir = context / "model"
    download_artifacts(artifact_uri=f"models:/{state.model.name}/{state.model.version}",
                       dst_path=str(model_dir))
    if not (model_dir / "MLmodel").exists():
        raise ImageBuildFailed(f"models:/{state.model.name}/{state.model.version} has no "
                               "MLmodel file", step=STEP)
    (context / METADATA).write_text(json.dumps({
        "model_name": state.model.name,
        "model_version": state.model.version,
        "model_uri": state.model.model_uri,
        "run_id": state.model.run_id,
        "requirements": state.requirements,
        "deployment_id": state.deployment_id,
    }, indent=2, sort_keys=True))


def serving_requirements(model_dir: Path) -> list[str]:
    """The model's requirements (its MLmodel environment files) for the serving venv:
    ``mlflow`` becomes ``mlflow-skinny`` of the same version (no tracking server, UI or
    their dependencies), plus numpy and pandas when the model does not pin them: pyfunc
    scoring imports both, and full mlflow is what brought them."""
    path = model_dir / "requirements.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    out: list[str] = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            out.append(text)
            continue
        if requirement.name.lower() == "mlflow":
            requirement.name = "mlflow-skinny"
            requirement.extras = set()
        out.append(str(requirement))
    names = {Requirement(r).name.lower() for r in out}
    if "mlflow-skinny" not in names:
        from mlflow.version import VERSION

        out.append(f"mlflow-skinny=={VERSION}")
    # what full mlflow brings and pyfunc serving imports (skinny leaves them out)
    out += [name for name in PYFUNC_SERVING_NEEDS if name not in names]
    # what the service itself imports (prometheus_client), unless the model pins it
    canonical = {canonicalize_name(name) for name in names}
    out += [r for r in SERVICE_REQUIREMENTS
            if canonicalize_name(Requirement(r).name) not in canonical]
    return out


def prepare_container_context(context: Path, *, wheels: str) -> str:
    """Add the Dockerfile, the service and the requirements to an assembled context;
    return the pip options for the build (``--no-index`` when the wheels are included)."""
    shutil.copy(IMAGE_FILES / "Dockerfile", context / "Dockerfile")
    (context / ".dockerignore").write_text("**/__pycache__\n")
    service = context / "trainship"
    service.mkdir()
    here = Path(__file__).resolve().parent
    for pattern in SERVICE_MODULES:
        for module in here.glob(pattern):
            target = service / module.relative_to(here)
            target.parent.mkdir(exist_ok=True)
            shutil.copy(module, target)
    requirements = serving_requirements(context / "model")
    (context / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (context / "wheels").mkdir()
    if wheels != "host":
        return ""
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                           "--disable-pip-version-check", "--only-binary=:all:",
                           "-r", str(context / "requirements.txt"), "-d",
                           str(context / "wheels")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageBuildFailed("Could not download the model's requirements for the image",
                               details=tail(proc.stdout + proc.stderr), step=STEP,
                               help="Every requirement must be installable as a wheel for "
                                    "the image's platform; pin versions that publish wheels.")
    return "--no-index"


def ecr_login(builder: str, registry: str) -> None:
    """Log the builder in to ECR with the build role's credentials (boto3)."""
    match = ECR_HOST.match(registry)
    if not match:
        return
    import boto3

    data = boto3.client("ecr", region_name=match.group(2)).get_authorization_token(
        registryIds=[match.group(1)])["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    subprocess.run([builder, "login", "--username", user, "--password-stdin", registry],
                   input=password, text=True, check=True, capture_output=True)


def _run_builder(args: list[str], *, env: dict[str, str] | None, what: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise ImageBuildFailed(f"{what} failed", details=tail(proc.stdout + proc.stderr, 60),
                               step=STEP)
    return proc.stdout


def container_build(context: Path, *, builder: str, repository: str, base_image: str,
                    tag: str, wheels: str, home: Path) -> str:
    """Build the image with podman or docker, push it, return ``<repo>:<tag>@<digest>``."""
    tls: list[str] = []
    if builder == "podman" and repository == "local":
        _require_podman()
        repository = f"{containers.ensure_registry(home)}/{REPOSITORY}"
    if repository.startswith(("127.0.0.1:", "localhost:")):
        tls = ["--tls-verify=false"]
    reference = f"{repository}:{tag}"
    ecr_login(builder, repository.split("/", 1)[0])
    env = build_image(context, builder=builder, reference=reference, base_image=base_image,
                      wheels=wheels, home=home)
    if builder == "podman":
        digest_file = context / "digest"
        _run_builder(["podman", "push", "--quiet", *tls, "--digestfile", str(digest_file),
                      reference], env=env, what="podman push")
        digest = digest_file.read_text().strip()
    else:  # buildx pushed the image itself and wrote its digest to the metadata file
        metadata = json.loads((context / DOCKER_METADATA).read_text())
        digest = str(metadata.get("containerimage.digest", ""))
        if not digest.startswith("sha256:"):
            raise ImageBuildFailed("docker buildx reported no pushed image digest",
                                   details=json.dumps(metadata)[:2000], step=STEP)
    return f"{reference}@{digest}"


def _require_podman() -> None:
    try:
        containers.require_tools()
    except containers.ContainerToolsMissing as exc:
        raise ImageBuildFailed(str(exc), step=STEP,
                               help=f"Install them: apt-get install "
                                    f"{containers.APT_PACKAGES}") from exc


def cluster_arch() -> str:
    """The cluster's node architecture (``TRAINSHIP_CLUSTER_ARCH``): the image's platform."""
    arch = os.environ.get("TRAINSHIP_CLUSTER_ARCH", "") or DEFAULT_ARCH
    if arch not in ARCHITECTURES:
        raise ImageBuildFailed(f"Unknown cluster architecture {arch!r}", step=STEP,
                               help=f"Set TRAINSHIP_CLUSTER_ARCH to one of "
                                    f"{', '.join(ARCHITECTURES)} (the cluster nodes').")
    return arch


def cache_reference(reference: str) -> str:
    """The repository's ``buildcache`` tag (kept mutable in ECR for this)."""
    return f"{reference.rpartition(':')[0]}:buildcache"


def build_command(builder: str, *, context: Path, reference: str, base_image: str,
                  pip_options: str, arch: str) -> list[str]:
    """The image build's command line.

    docker: BuildKit's inline cache (``BUILDKIT_INLINE_CACHE=1``) exports only min mode,
    the final stage's layers, so the builder stage that installs the model's dependencies
    was never cached (Docker docs, "Cache storage backends" / "Inline cache"). A registry
    cache in mode=max keeps every stage; it needs a docker-container builder (the default
    docker driver cannot export it: "Registry cache"), and ECR stores the cache as an image
    manifest with OCI media types (``image-manifest=true,oci-mediatypes=true``; AWS
    Containers blog, "Announcing remote cache support in Amazon ECR for BuildKit
    clients"). buildx pushes the image itself (a docker-container builder keeps no local
    image to push) and writes its digest to the metadata file. Attestations are off
    (``--provenance=false --sbom=false``): with them buildx pushes an index whose
    per-platform and attestation manifests are untagged images in ECR, which the
    repository's lifecycle rules count and could expire under a pinned tag.
    """
    platform = f"linux/{arch}"
    args = ["--build-arg", f"BASE_IMAGE={base_image}", "--build-arg",
            f"PIP_OPTIONS={pip_options}", "-t", reference, str(context)]
    if builder == "podman":
        return ["podman", "build", "--platform", platform, "--format", "docker", "--layers",
                "--pull=false", *args]
    if builder == "docker":
        cache = cache_reference(reference)
        return ["docker", "buildx", "build", "--builder", DOCKER_BUILDER,
                "--platform", platform, "--pull",
                "--cache-from", f"type=registry,ref={cache}",
                "--cache-to", f"type=registry,ref={cache},mode=max,image-manifest=true,"
                              "oci-mediatypes=true",
                "--provenance=false", "--sbom=false",
                "--push", "--metadata-file", str(context / DOCKER_METADATA), *args]
    raise ImageBuildFailed(f"Unknown image builder {builder!r}", step=STEP,
                           help="Set TRAINSHIP_IMAGE_BUILDER to docker, podman or bundle.")


def ensure_docker_builder(env: dict[str, str]) -> None:
    """A docker-container buildx builder (registry cache export needs one)."""
    probe = subprocess.run(["docker", "buildx", "inspect", DOCKER_BUILDER],
                           capture_output=True, text=True, env=env)
    if probe.returncode != 0:
        # The builder runs BuildKit's own image (Docker Hub's moby/buildkit unless
        # TRAINSHIP_BUILDKIT_IMAGE names a copy, e.g. in ECR, for builds without Docker Hub).
        buildkit = env.get("TRAINSHIP_BUILDKIT_IMAGE", "")
        _run_builder(["docker", "buildx", "create", "--name", DOCKER_BUILDER, "--driver",
                      "docker-container",
                      *(["--driver-opt", f"image={buildkit}"] if buildkit else []),
                      "--bootstrap"], env=env, what="docker buildx create")


def build_image(context: Path, *, builder: str, reference: str, base_image: str,
                wheels: str, home: Path) -> dict[str, str] | None:
    """Complete the context and build it as ``reference`` (docker also pushes it); return
    the builder's env."""
    arch = cluster_arch()
    env: dict[str, str] | None = None
    if builder == "podman":
        _require_podman()
        env = containers.engine_env(home)
        if base_image.startswith("debootstrap:"):
            base_image = containers.ensure_base_image(home)
    elif builder == "docker":
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        ensure_docker_builder(env)
    else:
        raise ImageBuildFailed(f"Unknown image builder {builder!r}", step=STEP,
                               help="Set TRAINSHIP_IMAGE_BUILDER to docker, podman or bundle.")
    pip_options = prepare_container_context(context, wheels=wheels)
    command = build_command(builder, context=context, reference=reference,
                            base_image=base_image, pip_options=pip_options, arch=arch)
    _run_builder(command, env=env, what=f"{builder} build")
    return env


def build(state: DeploymentState, *, tracking_uri: str, builder: str, registry: str,
          base_image: str = "", wheels: str = "", home: Path | None = None) -> str:
    assert state.model is not None
    tag = image_tag(state.model.name, state.model.version)
    with tempfile.TemporaryDirectory(prefix="trainship-image-") as tmp:
        context = Path(tmp)
        try:
            assemble_context(state, tracking_uri, context)
        except TrainshipError:
            raise
        except Exception as exc:
            raise ImageBuildFailed(f"Could not fetch model {state.model.name} version "
                                   f"{state.model.version} from MLflow",
                                   details=tail(traceback.format_exc()), step=STEP) from exc
        if builder == "bundle":
            return push_bundle(context, Path(registry), REPOSITORY, tag)
        return container_build(context, builder=builder, repository=registry,
                               base_image=base_image, tag=tag, wheels=wheels,
                               home=home or Path.cwd())


def builder_for(target: str) -> str:
    """``TRAINSHIP_IMAGE_BUILDERS`` (``target=builder,...``) or ``TRAINSHIP_IMAGE_BUILDER``."""
    table = dict(item.split("=", 1) for item in
                 os.environ.get("TRAINSHIP_IMAGE_BUILDERS", "").split(",") if "=" in item)
    return table.get(target) or os.environ.get("TRAINSHIP_IMAGE_BUILDER", "bundle")


def main(argv: list[str]) -> int:
    """``build`` (the only command): build the deployment's image, print its URI."""
    parser = argparse.ArgumentParser(prog="python -m trainship.image")
    parser.add_argument("command", choices=("build",))
    parser.parse_args(argv)
    state = DeploymentState.model_validate_json(staging.read_job())
    try:
        builder = builder_for(state.target)
        registry = os.environ.get("TRAINSHIP_REGISTRY", "registry") if builder == "bundle" \
            else os.environ.get("TRAINSHIP_IMAGE_REPOSITORY", "local")
        uri = build(state, tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
                    builder=builder, registry=registry,
                    base_image=os.environ.get("TRAINSHIP_BASE_IMAGE",
                                              "public.ecr.aws/docker/library/python:3.11-slim-bookworm"),
                    wheels=os.environ.get("TRAINSHIP_IMAGE_WHEELS", ""),
                    home=Path(os.environ.get("TRAINSHIP_HOME", ".trainship")))
    except TrainshipError as exc:
        exc.step = STEP
        staging.put_text(staging.error_uri(state.script_uri), exc.document().to_json())
        print(f"[trainship] {exc.name}: {exc.message}", file=sys.stderr)
        return 1
    print(uri)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
