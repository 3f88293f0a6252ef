"""Runtime settings read from the environment.

The same handlers run on AWS and on the local stack; what differs (where scripts are
staged, which MLflow, which cluster driver) is configuration injected here, never an
``if local:`` branch in a handler.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class Settings:
    staging_uri: str
    tracking_uri: str
    cluster: str
    model_alias: str
    rollout_timeout_seconds: int
    rollout_poll_seconds: int
    state_machine_arn: str
    archive_dir: str
    home: Path
    targets: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("TRAINSHIP_HOME", ".trainship")).resolve()
        return cls(
            staging_uri=os.environ.get("TRAINSHIP_STAGING_URI", str(home / "staging")),
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
            cluster=os.environ.get("TRAINSHIP_CLUSTER", "process"),
            model_alias=os.environ.get("TRAINSHIP_MODEL_ALIAS", "live"),
            rollout_timeout_seconds=_int("TRAINSHIP_ROLLOUT_TIMEOUT_SECONDS", 600),
            rollout_poll_seconds=_int("TRAINSHIP_ROLLOUT_POLL_SECONDS", 10),
            state_machine_arn=os.environ.get("STATE_MACHINE_ARN", ""),
            archive_dir=os.environ.get("TRAINSHIP_ARCHIVE_DIR", ""),
            home=home,
            targets=tuple(t for t in os.environ.get("TRAINSHIP_TARGETS", "").split(",") if t)
            or (os.environ.get("TRAINSHIP_CLUSTER", "process"),),
        )

    def driver_name(self, target: str) -> str:
        """The cluster driver of a deployment: its target, or this stack's default."""
        return target or self.cluster


# --- image entry point ---
DEFAULT_BASE_IMAGE = "public.ecr.aws/docker/library/python:3.11-slim-bookworm"


@dataclass(frozen=True)
class ImageSettings:
    """What ``python -m trainship.image`` reads from its environment (buildspecs/image.yml,
    the CodeBuild project's variables or the local stack's), once, in ``main``."""

    tracking_uri: str = ""
    # the builder per deployment target (TRAINSHIP_IMAGE_BUILDERS: ``target=builder,...``)
    builders: tuple[tuple[str, str], ...] = ()
    default_builder: str = "bundle"
    registry: Path = Path("registry")  # the bundle builder's registry directory
    image_repository: str = "local"  # podman/docker: where the image is pushed
    base_image: str = DEFAULT_BASE_IMAGE
    cluster_arch: str = "amd64"
    wheels: str = ""  # "host": the model's wheels downloaded outside the build
    buildkit_image: str = ""  # docker: the buildx builder's BuildKit image (moby/buildkit)
    home: Path = Path(".trainship")

    @classmethod
    def from_env(cls) -> ImageSettings:
        env = os.environ
        return cls(
            tracking_uri=env.get("MLFLOW_TRACKING_URI", ""),
            builders=tuple((target, builder) for target, equals, builder in
                           (item.partition("=") for item in
                            env.get("TRAINSHIP_IMAGE_BUILDERS", "").split(",")) if equals),
            default_builder=env.get("TRAINSHIP_IMAGE_BUILDER", "bundle"),
            registry=Path(env.get("TRAINSHIP_REGISTRY", "registry")),
            image_repository=env.get("TRAINSHIP_IMAGE_REPOSITORY", "local"),
            base_image=env.get("TRAINSHIP_BASE_IMAGE", DEFAULT_BASE_IMAGE),
            cluster_arch=env.get("TRAINSHIP_CLUSTER_ARCH", "") or "amd64",
            wheels=env.get("TRAINSHIP_IMAGE_WHEELS", ""),
            buildkit_image=env.get("TRAINSHIP_BUILDKIT_IMAGE", ""),
            home=Path(env.get("TRAINSHIP_HOME", ".trainship")),
        )

    def builder_for(self, target: str) -> str:
        """The image builder of a deployment's target, or the default builder."""
        return dict(self.builders).get(target) or self.default_builder
