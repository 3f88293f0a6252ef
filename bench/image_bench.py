"""`make bench`'s image part: what a new version of a model costs to build and ship.

On AWS a deployment's image is built by CodeBuild and pushed to ECR, and every node that
runs it pulls the layers it does not have (docs/benchmarks.md, "On AWS"). The part of that
this machine can measure is the same Dockerfile built with podman (container mode) and
pushed to a local OCI registry:

  * the first build of a model: its dependency layer (the venv) built from nothing;
  * a new version of the same model (retrained, same requirements): built on the layers
    the first build left, the way a build on AWS finds them in the registry cache of its
    dependency set (trainship.image.docker.cache_reference);
  * of the new version's layers in the registry, how many bytes were not there already:
    what its push uploads and what a node that ran the previous version pulls (a registry
    stores a layer once by digest; ECR skips the layers it has,
    BatchCheckLayerAvailability).

``measure_rebuild(first, second, home, work)`` returns a :class:`Rebuild`; both model
directories are MLflow models with the same requirements.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))


@dataclass(frozen=True)
class Rebuild:
    first_seconds: float  # build and push of the model's first image (venv built)
    next_seconds: float  # build and push of a new version with the same requirements
    image_mb: float  # the new version's layers in the registry (compressed)
    new_mb: float  # of which the registry did not have (uploaded; pulled by a node)
    new_layers: int
    layers: int


def layer_sizes(registry: str, repository: str, tag: str) -> dict[str, int]:
    """The image's layers (digest: compressed size) as its manifest in the registry lists
    them (the OCI distribution API, GET /v2/<name>/manifests/<reference>)."""
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}",
                                     headers={"Accept": MANIFEST_TYPES})
    with urllib.request.urlopen(request, timeout=30) as response:
        manifest = json.loads(response.read())
    return {layer["digest"]: int(layer["size"]) for layer in manifest["layers"]}


def new_bytes(before: dict[str, int], after: dict[str, int]) -> tuple[int, int]:
    """Bytes and number of the layers of ``after`` that ``before`` does not have."""
    new = {digest: size for digest, size in after.items() if digest not in before}
    return sum(new.values()), len(new)


def measure_rebuild(first: Path, second: Path, home: Path, work: Path) -> Rebuild:
    from trainship import containers
    from trainship.config import ImageSettings
    from trainship.image.base import REPOSITORY
    from trainship.image.context import METADATA
    from trainship.image.podman import PodmanBuilder
    from trainship.serving.model_spec import SPEC_FILE, write_spec

    base = containers.ensure_base_image(home)  # made once, not part of either build
    registry = containers.ensure_registry(home)
    settings = replace(ImageSettings.from_env(), base_image=base, wheels="host", home=home,
                       image_repository=f"{registry}/{REPOSITORY}")
    seconds: list[float] = []
    for number, model in enumerate((first, second), start=1):
        context = work / f"rebuild-v{number}"
        context.mkdir(parents=True)
        shutil.copytree(model, context / "model")
        (context / METADATA).write_text(json.dumps({"version": str(number)}))
        write_spec(model, context / SPEC_FILE, title="bench", version=str(number))
        started = time.perf_counter()
        PodmanBuilder(settings).push(context, f"bench-v{number}")
        seconds.append(time.perf_counter() - started)
    v1 = layer_sizes(registry, REPOSITORY, "bench-v1")
    v2 = layer_sizes(registry, REPOSITORY, "bench-v2")
    added, count = new_bytes(v1, v2)
    return Rebuild(first_seconds=seconds[0], next_seconds=seconds[1],
                   image_mb=sum(v2.values()) / 1e6, new_mb=added / 1e6, new_layers=count,
                   layers=len(v2))
