"""Picks the image builder of a deployment's target: the one place that imports the
builders (as trainship.cluster.drivers picks a cluster driver)."""

from __future__ import annotations

from trainship.config import ImageSettings
from trainship.errors import ImageBuildFailed
from trainship.image.base import BUILDERS_HELP, STEP, ImageBuilder
from trainship.image.bundle import BundleBuilder
from trainship.image.docker import DockerBuilder
from trainship.image.podman import PodmanBuilder

BUILDERS: dict[str, type[BundleBuilder | PodmanBuilder | DockerBuilder]] = {
    "bundle": BundleBuilder, "podman": PodmanBuilder, "docker": DockerBuilder}


def image_builder(settings: ImageSettings, target: str = "") -> ImageBuilder:
    """The builder of a deployment's target (``TRAINSHIP_IMAGE_BUILDERS``), else the
    default one (``TRAINSHIP_IMAGE_BUILDER``)."""
    name = settings.builder_for(target)
    if name not in BUILDERS:
        raise ImageBuildFailed(f"Unknown image builder {name!r}", step=STEP,
                               help=BUILDERS_HELP)
    return BUILDERS[name](settings)
