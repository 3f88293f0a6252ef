"""What the two container builders (podman, docker) share: the image's platform, the
build of trainship/image_files/Dockerfile, the push, the registry login."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from trainship.config import ImageSettings
from trainship.errors import ImageBuildFailed
from trainship.image.base import STEP, run_builder
from trainship.image.context import prepare_container_context
from trainship.image.login import ecr_login

ARCHITECTURES = ("amd64", "arm64")


def cluster_arch(arch: str) -> str:
    """The cluster's node architecture (``TRAINSHIP_CLUSTER_ARCH``): the image's platform."""
    if arch not in ARCHITECTURES:
        raise ImageBuildFailed(f"Unknown cluster architecture {arch!r}", step=STEP,
                               help=f"Set TRAINSHIP_CLUSTER_ARCH to one of "
                                    f"{', '.join(ARCHITECTURES)} (the cluster nodes').")
    return arch


class ContainerBuilder(ABC):
    """Builds the Dockerfile for ``linux/<cluster arch>`` on the settings' base image and
    pushes it to the settings' image repository."""

    name: str

    def __init__(self, settings: ImageSettings) -> None:
        self.settings = settings

    def push(self, context: Path, tag: str) -> str:
        """Build the image, push it, return ``<repo>:<tag>@<digest>``."""
        reference = f"{self.repository()}:{tag}"
        ecr_login(self.name, reference.split("/", 1)[0])
        env = self.build(context, reference)
        return f"{reference}@{self.pushed_digest(context, reference, env)}"

    def build(self, context: Path, reference: str) -> dict[str, str] | None:
        """Complete the context and build it as ``reference`` (docker also pushes it);
        return the environment the builder ran with."""
        arch = cluster_arch(self.settings.cluster_arch)
        env = self.environment()
        base_image = self.base_image()
        pip_options = prepare_container_context(context, wheels=self.settings.wheels)
        run_builder(self.command(context, reference=reference, base_image=base_image,
                                 pip_options=pip_options, arch=arch),
                    env=env, what=f"{self.name} build")
        return env

    def repository(self) -> str:
        """Where the image goes (``TRAINSHIP_IMAGE_REPOSITORY``)."""
        return self.settings.image_repository

    def base_image(self) -> str:
        return self.settings.base_image

    @staticmethod
    def build_args(context: Path, *, reference: str, base_image: str,
                   pip_options: str) -> list[str]:
        """The Dockerfile's arguments, the tag and the context: every builder's."""
        return ["--build-arg", f"BASE_IMAGE={base_image}", "--build-arg",
                f"PIP_OPTIONS={pip_options}", "-t", reference, str(context)]

    @abstractmethod
    def environment(self) -> dict[str, str] | None:
        """Get the tool ready; the environment its commands run with (None: this one)."""

    @abstractmethod
    def command(self, context: Path, *, reference: str, base_image: str, pip_options: str,
                arch: str) -> list[str]:
        """The build's command line."""

    @abstractmethod
    def pushed_digest(self, context: Path, reference: str, env: dict[str, str] | None) -> str:
        """Push the built image (unless the build did) and return its ``sha256:`` digest."""
