"""The bundle builder: the context as a content-addressed directory (the local process
mode's ECR, trainship.bundles); nothing is built, the process driver serves from it."""

from __future__ import annotations

from pathlib import Path

from trainship.bundles import push_bundle
from trainship.config import ImageSettings
from trainship.image.base import REPOSITORY


class BundleBuilder:
    name = "bundle"

    def __init__(self, settings: ImageSettings) -> None:
        self.registry = settings.registry

    def push(self, context: Path, tag: str) -> str:
        return push_bundle(context, self.registry, REPOSITORY, tag)
