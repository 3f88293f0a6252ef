"""The image step that buildspecs/image.yml calls: ``python -m trainship.image build``.

It assembles the image context (the registered model downloaded from MLflow, the
inference service's metadata), stores it content-addressed, tags it ``<model>-v<version>``
and prints the image URI pinned by digest. The builder is configuration
(``TRAINSHIP_IMAGE_BUILDER``): ``bundle`` keeps the context as a content-addressed
directory in the registry directory ``TRAINSHIP_REGISTRY`` (the local process mode's ECR).
On failure it stages an ImageBuildFailed error document and exits 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from trainship import staging
from trainship.errors import ImageBuildFailed, TrainshipError, tail
from trainship.state import DeploymentState
from trainship.training import error_uri

STEP = "BuildImage"
METADATA = "trainship-image.json"


def tree_digest(root: Path) -> str:
    """sha256 over the relative paths and contents of every file under root."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def image_tag(model_name: str, version: str) -> str:
    return f"{model_name}-v{version}"


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


def bundle_dir(registry: Path, repository: str, digest: str) -> Path:
    return registry / repository / "sha256" / digest


def push_bundle(context: Path, registry: Path, repository: str, tag: str) -> str:
    digest = tree_digest(context)
    target = bundle_dir(registry, repository, digest)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging_dir = target.with_name(target.name + ".partial")
        shutil.rmtree(staging_dir, ignore_errors=True)
        shutil.copytree(context, staging_dir)
        staging_dir.rename(target)
    tags = registry / repository / "tags"
    tags.mkdir(parents=True, exist_ok=True)
    (tags / tag).write_text(digest)
    return f"{registry}/{repository}:{tag}@sha256:{digest}"


def resolve_bundle(image_uri: str) -> Path:
    """The bundle directory of a ``<registry dir>/<repository>:<tag>@sha256:<digest>`` URI."""
    location, _, digest = image_uri.partition("@sha256:")
    location = location.rsplit(":", 1)[0]
    registry, _, repository = location.rpartition("/")
    return bundle_dir(Path(registry), repository, digest)


def build(state: DeploymentState, *, tracking_uri: str, builder: str, registry: str) -> str:
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
            return push_bundle(context, Path(registry), "trainship-models", tag)
        raise ImageBuildFailed(f"Unknown image builder {builder!r}", step=STEP,
                               help="Set TRAINSHIP_IMAGE_BUILDER to bundle.")


def main(argv: list[str]) -> int:
    state = DeploymentState.model_validate_json(os.environ["TRAINSHIP_JOB"])
    try:
        uri = build(state, tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
                    builder=os.environ.get("TRAINSHIP_IMAGE_BUILDER", "bundle"),
                    registry=os.environ.get("TRAINSHIP_REGISTRY", "registry"))
    except TrainshipError as exc:
        exc.step = STEP
        staging.put_text(error_uri(state.script_uri), exc.document().to_json())
        print(f"[trainship] {exc.name}: {exc.message}", file=sys.stderr)
        return 1
    print(uri)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
