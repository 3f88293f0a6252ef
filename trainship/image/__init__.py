"""The image step that buildspecs/image.yml calls: ``python -m trainship.image build``.

It assembles the image context (the registered model downloaded from MLflow, its
requirements, the inference service, the multi-stage Dockerfile: ``context``), builds it,
pushes the tag ``<model>-v<version>`` and prints the image URI pinned by digest. Its
settings are ``trainship.config.ImageSettings``, read once. The builder (an
``ImageBuilder``, ``base``) follows the deployment's target (``TRAINSHIP_IMAGE_BUILDERS``,
e.g. ``process=bundle,podman=podman``; ``TRAINSHIP_IMAGE_BUILDER`` otherwise), picked in
``builders``:

- ``docker`` / ``podman``: ``<builder> build`` of trainship/image_files/Dockerfile on
  ``TRAINSHIP_BASE_IMAGE`` (``debootstrap:bookworm`` = the locally made base image) for
  ``linux/<TRAINSHIP_CLUSTER_ARCH>`` (amd64 unless set), pushed to the repository
  ``TRAINSHIP_IMAGE_REPOSITORY`` (ECR: logged in with the build role's credentials,
  ``login``; docker keeps every stage's layers in a ``buildcache-<key>`` tag of the
  repository, one per dependency set (requirements, base, pip options, platform), a
  BuildKit registry cache in mode=max, built by a docker-container buildx builder running
  ``TRAINSHIP_BUILDKIT_IMAGE`` when set; ``local``: the local registry).
  ``TRAINSHIP_IMAGE_WHEELS=host`` downloads the model's wheels on the build host and
  installs them with ``--no-index`` (no package index inside the build).
- ``bundle``: the context as a content-addressed directory under ``TRAINSHIP_REGISTRY``
  (the local process mode's ECR).

On failure it stages an ImageBuildFailed error document and exits 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from pathlib import Path

from trainship import staging
from trainship.config import ImageSettings
from trainship.errors import ImageBuildFailed, TrainshipError, tail
from trainship.image.base import STEP, ImageBuilder
from trainship.image.builders import image_builder
from trainship.image.context import assemble_context, image_tag, prepare_container_context
from trainship.state import DeploymentState

__all__ = ["STEP", "ImageBuilder", "build", "image_builder", "image_tag", "main",
           "prepare_container_context"]


def build(state: DeploymentState, *, tracking_uri: str, builder: ImageBuilder) -> str:
    """Assemble the deployment's model into a context and push it with ``builder``."""
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
        return builder.push(context, tag)


def main(argv: list[str]) -> int:
    """``build`` (the only command): build the deployment's image, print its URI."""
    parser = argparse.ArgumentParser(prog="python -m trainship.image")
    parser.add_argument("command", choices=("build",))
    parser.parse_args(argv)
    settings = ImageSettings.from_env()
    state = DeploymentState.model_validate_json(staging.read_job())
    try:
        uri = build(state, tracking_uri=settings.tracking_uri,
                    builder=image_builder(settings, state.target))
    except TrainshipError as exc:
        exc.step = STEP
        staging.put_text(staging.error_uri(state.script_uri), exc.document().to_json())
        print(f"[trainship] {exc.name}: {exc.message}", file=sys.stderr)
        return 1
    print(uri)
    return 0
