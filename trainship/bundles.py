"""Image bundles: the local process mode's ECR.

A bundle is an image context (the model, its requirements, the inference service) kept
as a content-addressed directory ``<registry dir>/<repository>/sha256/<digest>``, tagged
under ``<registry dir>/<repository>/tags/<tag>``. The image step pushes one
(trainship.image, builder ``bundle``); the process driver serves from one.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path


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


def bundle_dir(registry: Path, repository: str, digest: str) -> Path:
    """Where the bundle of a digest lives in a registry directory."""
    return registry / repository / "sha256" / digest


def push_bundle(context: Path, registry: Path, repository: str, tag: str) -> str:
    """Copy an image context into the registry directory under its digest, tag it, and
    return its URI ``<registry dir>/<repository>:<tag>@sha256:<digest>``."""
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
