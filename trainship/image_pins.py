"""Image tags that keep a model's serving and rollback images from expiring.

At promotion the serving image is tagged ``live-<serving name>`` and the image it
replaced ``previous-<serving name>``; the ECR lifecycle policy (infra) never expires an
image carrying either prefix. "The image it replaced" is the one that carried the live tag
until now, so the pins need nothing but the repository itself.

PromoteModel gets an ``ImagePins`` driver (``pins_from_env``), as it gets a cluster driver:
(the API and PrepareRollback ask the same driver whether a version's image still ``exists``)
``EcrImagePins`` when ``TRAINSHIP_IMAGE_REPOSITORY`` is an ECR repository, ``NoImagePins``
for the local stack's registries (a bundle directory or a registry on 127.0.0.1), which
expire nothing.

ECR retags without pulling: BatchGetImage returns the image's manifest, PutImage stores the
same manifest (same digest) under another tag ("Retagging an image in Amazon ECR", Amazon
ECR User Guide). PutImage answers ImageAlreadyExistsException when the tag already points at
that manifest, and ImageTagAlreadyExistsException when the tag exists and the repository's
tags are immutable (both mutable tags need the repository's tag-mutability exclusion).
"""

from __future__ import annotations

import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

from trainship.bundles import resolve_bundle
from trainship.config import ImageSettings
from trainship.errors import InternalError, RemovalFailed, RolloutFailed, TransientError
from trainship.names import ECR_HOST, LIVE_TAG_PREFIX, PREVIOUS_TAG_PREFIX, serving_name

STEP = "PromoteModel"
PURGE_STEP = "RemoveModel"
PURGE_HELP = ("A purge deletes the model's images with ecr:ListImages and ecr:BatchDeleteImage "
              "on the repository (RemoveModel's role has both). The model is out of service "
              "already; run the delete with purge again once that is fixed.")

# What BatchGetImage may return: a single-platform manifest (Docker or OCI) or an index
# (a multi-platform build, or BuildKit's provenance attestations). ECR's own containerd
# resolver (awslabs/amazon-ecr-containerd-resolver) asks for the same set.
ACCEPTED_MEDIA_TYPES = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
]
TRANSIENT_CODES = {"ThrottlingException", "ServerException", "ServiceUnavailableException",
                   "RequestTimeout", "RequestTimeoutException", "InternalFailure"}
PIN_HELP = ("PromoteModel tags the serving image live-<model> and the one it replaced "
            "previous-<model> so that the repository's lifecycle policy never expires them. "
            "The cluster role needs ecr:BatchGetImage and ecr:PutImage on the repository, and "
            "if its tags are immutable, live-* and previous-* must be excluded (image tag "
            "mutability exclusion filters). The previous version keeps serving; deploy again "
            "once that is fixed.")


def live_tag(model_name: str) -> str:
    return f"{LIVE_TAG_PREFIX}{serving_name(model_name)}"


def previous_tag(model_name: str) -> str:
    return f"{PREVIOUS_TAG_PREFIX}{serving_name(model_name)}"


class ImagePins(Protocol):
    def pin(self, model_name: str, image_uri: str) -> str:
        """``image_uri`` (``<repository>:<tag>@sha256:<digest>``) now serves ``model_name``:
        tag it live, and the image that was live previous. Returns what was done."""

    def purge(self, model_name: str, image_uris: list[str]) -> list[str]:
        """A purge (``trainship delete --purge``): delete the model's images, those named
        and those tagged ``<serving name>-v<N>``, with their live-/previous- pins. What
        was deleted."""

    def exists(self, image_uri: str) -> bool:
        """Whether the registry still holds the image of ``image_uri`` (by its digest): a
        rollback serves it again without a build."""


LOCAL_REGISTRIES = ("127.0.0.1:", "localhost:")
MANIFEST_ACCEPT = ", ".join(ACCEPTED_MEDIA_TYPES)


class NoImagePins:
    """Registries that expire nothing (the local stack's): nothing to pin. Their images
    are a bundle directory (process mode) or a manifest in the registry on 127.0.0.1. A
    purge deletes the bundles of process mode (trainship.bundles); the local OCI registry of
    container mode does not delete images, so they stay."""

    def pin(self, model_name: str, image_uri: str) -> str:
        return "the registry expires no images: nothing to pin"

    def purge(self, model_name: str, image_uris: list[str]) -> list[str]:
        deleted = []
        for uri in dict.fromkeys(image_uris):
            bundle = resolve_bundle(uri) if "@sha256:" in uri else None
            if bundle is None or not bundle.is_dir():
                continue
            shutil.rmtree(bundle, ignore_errors=True)
            tags = bundle.parent.parent / "tags"
            for tag in tags.glob(f"{serving_name(model_name)}-v*") if tags.is_dir() else []:
                if tag.read_text().strip() == bundle.name:
                    tag.unlink(missing_ok=True)
            deleted.append(uri)
        return deleted

    def exists(self, image_uri: str) -> bool:
        location, _, digest = image_uri.partition("@")
        if location.startswith(LOCAL_REGISTRIES):
            return _registry_has(location, digest)
        if location.startswith("/") and digest:
            return resolve_bundle(image_uri).is_dir()
        return bool(location and digest)  # another registry: the rollout will tell


def _registry_has(location: str, digest: str) -> bool:
    """The local registry's manifest of ``digest`` (distribution API: HEAD
    /v2/<name>/manifests/<digest>, 404 when unknown)."""
    host, _, path = location.partition("/")
    name = path.rsplit(":", 1)[0]
    request = urllib.request.Request(f"http://{host}/v2/{name}/manifests/{digest}",
                                     method="HEAD", headers={"Accept": MANIFEST_ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise TransientError(f"The image registry {host} answered {exc.code}",
                             details=str(exc)) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise TransientError(f"The image registry {host} is not reachable",
                             details=str(exc),
                             help="Start the local stack again (`trainship local up`): it "
                                  "starts the registry.") from exc


@dataclass(frozen=True)
class EcrRepository:
    registry_id: str
    region: str
    name: str

    @classmethod
    def parse(cls, uri: str) -> EcrRepository | None:
        """``<account>.dkr.ecr.<region>.amazonaws.com/<name>`` (a tag or digest is dropped)."""
        host, _, path = uri.partition("/")
        match = ECR_HOST.match(host)
        if not match or not path:
            return None
        name = path.split("@", 1)[0].split(":", 1)[0]
        return cls(match["account"], match["region"], name)


@dataclass
class _Manifest:
    digest: str
    manifest: str
    media_type: str


class EcrImagePins:
    def __init__(self, repository: EcrRepository, client: Any) -> None:
        self.repository = repository
        self.client = client

    def pin(self, model_name: str, image_uri: str) -> str:
        location, _, digest = image_uri.partition("@")
        image_repository = EcrRepository.parse(location)
        if not digest or image_repository != self.repository:
            raise RolloutFailed(f"The image {image_uri} is not a digest in the ECR repository "
                                f"{self.repository.name}: it cannot be pinned", step=STEP,
                                help=PIN_HELP)
        new = self._get({"imageDigest": digest})
        if new is None:
            raise RolloutFailed(f"ECR has no image {digest} in {self.repository.name}",
                                step=STEP, help=PIN_HELP)
        done = []
        current = self._get({"imageTag": live_tag(model_name)})
        if current is not None and current.digest != new.digest:
            self._put(current, previous_tag(model_name))  # protected before live moves
            done.append(f"{previous_tag(model_name)} -> {current.digest}")
        self._put(new, live_tag(model_name))
        done.append(f"{live_tag(model_name)} -> {new.digest}")
        return "; ".join(done)

    def purge(self, model_name: str, image_uris: list[str]) -> list[str]:
        """BatchDeleteImage by digest: "You can completely delete an image (and all of its
        tags) by specifying the image's digest" (ECR API reference, BatchDeleteImage; at
        most 100 image ids per call), so the live-/previous- pins go with their images.
        The digests: the images named (the versions that served) and every image tagged
        ``<serving name>-v<N>`` (versions that never went live) or carrying a pin."""
        own = re.compile(rf"^{re.escape(serving_name(model_name))}-v[0-9]+$")
        pins = {live_tag(model_name), previous_tag(model_name)}
        digests: dict[str, str] = {}
        for uri in image_uris:
            location, _, digest = uri.partition("@")
            if digest and EcrRepository.parse(location) == self.repository:
                digests.setdefault(digest, uri)
        token: str | None = None
        while True:
            page = self._call("list_images", filter={"tagStatus": "TAGGED"}, maxResults=1000,
                              **({"nextToken": token} if token else {}), step=PURGE_STEP)
            for image in page.get("imageIds") or []:
                tag = image.get("imageTag", "")
                if own.match(tag) or tag in pins:
                    digests.setdefault(image["imageDigest"],
                                       f"{self.repository.name}:{tag}@{image['imageDigest']}")
            token = page.get("nextToken")
            if not token:
                break
        ids = list(digests)
        deleted = []
        for start in range(0, len(ids), 100):
            answer = self._call("batch_delete_image", step=PURGE_STEP,
                                imageIds=[{"imageDigest": d} for d in ids[start:start + 100]])
            deleted += [digests[i["imageDigest"]] for i in answer.get("imageIds") or []
                        if i.get("imageDigest") in digests]
            failures = [f for f in answer.get("failures") or []
                        if f.get("failureCode") != "ImageNotFound"]
            if failures:
                raise RemovalFailed(f"ECR BatchDeleteImage failed: "
                                    f"{failures[0].get('failureCode')}",
                                    details=str(failures), step=PURGE_STEP)
        return list(dict.fromkeys(deleted))

    def exists(self, image_uri: str) -> bool:
        """DescribeImages of the digest: ImageNotFoundException when the repository no
        longer has it ("DescribeImages", Errors, Amazon ECR API Reference), e.g. expired by
        the lifecycle policy, which keeps only live-/previous- tagged images for ever."""
        from botocore.exceptions import BotoCoreError, ClientError

        location, _, digest = image_uri.partition("@")
        repository = EcrRepository.parse(location)
        if not digest or repository is None:
            return False
        try:
            self.client.describe_images(registryId=repository.registry_id,
                                        repositoryName=repository.name,
                                        imageIds=[{"imageDigest": digest}])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return False
            if code in TRANSIENT_CODES:
                raise TransientError(f"ECR DescribeImages: {code}", details=str(exc)) from exc
            raise InternalError(f"Could not check the image in ECR (DescribeImages: {code})",
                                details=str(exc),
                                help="The caller needs ecr:DescribeImages on the stack's "
                                     "repository.") from exc
        except BotoCoreError as exc:
            raise TransientError(f"ECR DescribeImages: {exc}", details=str(exc)) from exc
        return True

    def _call(self, operation: str, step: str = STEP, **params: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(
                registryId=self.repository.registry_id,
                repositoryName=self.repository.name, **params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ImageAlreadyExistsException":
                return None  # the tag already points at this manifest
            if code in TRANSIENT_CODES:
                raise TransientError(f"ECR {operation}: {code}", details=str(exc),
                                     step=step) from exc
            if step == PURGE_STEP:
                raise RemovalFailed(f"Could not delete the model's images in ECR ({operation}: "
                                    f"{code})", details=str(exc), step=step,
                                    help=PURGE_HELP) from exc
            raise RolloutFailed(f"Could not pin the serving image in ECR ({operation}: "
                                f"{code})", details=str(exc), step=STEP,
                                help=PIN_HELP) from exc
        except BotoCoreError as exc:
            raise TransientError(f"ECR {operation}: {exc}", details=str(exc),
                                 step=step) from exc

    def _get(self, image_id: dict[str, str]) -> _Manifest | None:
        response = self._call("batch_get_image", imageIds=[image_id],
                              acceptedMediaTypes=ACCEPTED_MEDIA_TYPES)
        for image in response.get("images") or []:
            manifest = image["imageManifest"]
            return _Manifest(digest=image["imageId"]["imageDigest"], manifest=manifest,
                             media_type=image.get("imageManifestMediaType", ""))
        failures = [f for f in response.get("failures") or []
                    if f.get("failureCode") not in ("ImageNotFound",
                                                    "ImageTagDoesNotMatchDigest")]
        if failures:
            raise RolloutFailed(f"ECR BatchGetImage failed: {failures[0].get('failureCode')}",
                                details=str(failures), step=STEP, help=PIN_HELP)
        return None

    def _put(self, image: _Manifest, tag: str) -> None:
        params: dict[str, Any] = {"imageManifest": image.manifest, "imageTag": tag,
                                  "imageDigest": image.digest}
        if image.media_type:
            params["imageManifestMediaType"] = image.media_type
        if self._call("put_image", **params) is not None:
            return
        # ImageAlreadyExistsException: fine if the tag already points at this image (a
        # retried PromoteModel); anything else means the tag could not move
        tagged = self._get({"imageTag": tag})
        if tagged is None or tagged.digest != image.digest:
            raise RolloutFailed(f"ECR kept {tag} on {tagged.digest if tagged else 'nothing'} "
                                f"instead of {image.digest} (immutable tags?)", step=STEP,
                                help=PIN_HELP)


def pins_from_env() -> ImagePins:
    """ECR pins when ``TRAINSHIP_IMAGE_REPOSITORY`` is an ECR repository, else none."""
    repository = EcrRepository.parse(ImageSettings.from_env().image_repository)
    if repository is None:
        return NoImagePins()
    import boto3

    return EcrImagePins(repository, boto3.client("ecr", region_name=repository.region))
