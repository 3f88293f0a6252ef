"""The docker builder: ``docker buildx`` with a registry cache (CodeBuild on AWS)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from trainship.errors import ImageBuildFailed
from trainship.image.base import STEP, run_builder
from trainship.image.container import ContainerBuilder
from trainship.names import CACHE_TAG_PREFIX

DOCKER_BUILDER = "trainship"  # the docker-container buildx builder
DOCKER_METADATA = "buildx-metadata.json"


def dependency_key(context: Path, *, base_image: str, pip_options: str, arch: str) -> str:
    """What the builder stage's venv layer depends on: the context's requirements.txt and
    wheels/ (names and sizes), the base image, pip's options and the platform (16 hex
    digits)."""
    digest = hashlib.sha256()
    for part in (base_image, pip_options, arch):
        digest.update(part.encode() + b"\0")
    digest.update((context / "requirements.txt").read_bytes() + b"\0")
    wheels = context / "wheels"
    for wheel in sorted(wheels.iterdir()) if wheels.is_dir() else []:
        # a wheel's file name carries its version; its size stands in for its content
        digest.update(f"{wheel.name}:{wheel.stat().st_size}".encode() + b"\0")
    return digest.hexdigest()[:16]


def cache_reference(reference: str, key: str) -> str:
    """The registry cache of every image whose dependencies have this key.

    One cache per dependency set, not one for the repository: BuildKit's registry cache
    export replaces the tag's content, so with a single ``buildcache`` tag a build of
    another model in between left the next build without its venv layer (pip ran again,
    the layer was pushed again as a new blob and pulled again by every node). Keyed by the
    requirements, a new version of a model whose requirements did not change finds its
    venv, and only its model layers are new (ECR skips the layers it has:
    BatchCheckLayerAvailability)."""
    return f"{reference.rpartition(':')[0]}:{CACHE_TAG_PREFIX}{key}"


class DockerBuilder(ContainerBuilder):
    name = "docker"

    def environment(self) -> dict[str, str]:
        """A docker-container buildx builder (registry cache export needs one)."""
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        probe = subprocess.run(["docker", "buildx", "inspect", DOCKER_BUILDER],
                               capture_output=True, text=True, env=env)
        if probe.returncode != 0:
            # The builder runs BuildKit's own image (Docker Hub's moby/buildkit unless
            # TRAINSHIP_BUILDKIT_IMAGE names a copy, e.g. in ECR, for builds without
            # Docker Hub).
            buildkit = self.settings.buildkit_image
            run_builder(["docker", "buildx", "create", "--name", DOCKER_BUILDER, "--driver",
                         "docker-container",
                         *(["--driver-opt", f"image={buildkit}"] if buildkit else []),
                         "--bootstrap"], env=env, what="docker buildx create")
        return env

    def command(self, context: Path, *, reference: str, base_image: str, pip_options: str,
                arch: str) -> list[str]:
        """BuildKit's inline cache (``BUILDKIT_INLINE_CACHE=1``) exports only min mode,
        the final stage's layers, so the builder stage that installs the model's
        dependencies was never cached (Docker docs, "Cache storage backends" / "Inline
        cache"). A registry cache in mode=max keeps every stage; it needs a
        docker-container builder (the default docker driver cannot export it: "Registry
        cache"), and ECR stores the cache as an image manifest with OCI media types
        (``image-manifest=true,oci-mediatypes=true``; AWS Containers blog, "Announcing
        remote cache support in Amazon ECR for BuildKit clients"). buildx pushes the image
        itself (a docker-container builder keeps no local image to push) and writes its
        digest to the metadata file. Attestations are off (``--provenance=false
        --sbom=false``): with them buildx pushes an index whose per-platform and
        attestation manifests are untagged images in ECR, which the repository's lifecycle
        rules count and could expire under a pinned tag. A cache that cannot be exported
        does not fail the build (``ignore-error=true``, "Registry cache"): the image is
        pushed, only the next build runs pip again."""
        cache = cache_reference(reference, dependency_key(
            context, base_image=base_image, pip_options=pip_options, arch=arch))
        return ["docker", "buildx", "build", "--builder", DOCKER_BUILDER,
                "--platform", f"linux/{arch}", "--pull",
                "--cache-from", f"type=registry,ref={cache}",
                "--cache-to", f"type=registry,ref={cache},mode=max,image-manifest=true,"
                              "oci-mediatypes=true,ignore-error=true",
                "--provenance=false", "--sbom=false",
                "--push", "--metadata-file", str(context / DOCKER_METADATA),
                *self.build_args(context, reference=reference, base_image=base_image,
                                 pip_options=pip_options)]

    def pushed_digest(self, context: Path, reference: str, env: dict[str, str] | None) -> str:
        """buildx pushed the image itself and wrote its digest to the metadata file."""
        metadata = json.loads((context / DOCKER_METADATA).read_text())
        digest = str(metadata.get("containerimage.digest", ""))
        if not digest.startswith("sha256:"):
            raise ImageBuildFailed("docker buildx reported no pushed image digest",
                                   details=json.dumps(metadata)[:2000], step=STEP)
        return digest
