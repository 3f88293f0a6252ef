"""What every image builder shares: the protocol, the step's name, running a build tool."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

from trainship.errors import ImageBuildFailed, tail

STEP = "BuildImage"
REPOSITORY = "trainship-models"
BUILDERS_HELP = "Set TRAINSHIP_IMAGE_BUILDER to docker, podman or bundle."


class ImageBuilder(Protocol):
    """Builds an assembled image context (trainship.image.context) and pushes it."""

    name: str

    def push(self, context: Path, tag: str) -> str:
        """Build ``context``, push it as ``tag`` and return the image URI pinned by digest
        (``<repository>:<tag>@sha256:<digest>``). Raises ImageBuildFailed."""


def run_builder(args: list[str], *, env: dict[str, str] | None, what: str) -> str:
    """Run a build tool; its failure is an ImageBuildFailed with the output's tail."""
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise ImageBuildFailed(f"{what} failed", details=tail(proc.stdout + proc.stderr, 60),
                               step=STEP)
    return proc.stdout
