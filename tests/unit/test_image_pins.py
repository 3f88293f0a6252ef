"""Image pins at promotion (issue 10, item 7): the serving image is tagged live-<model>, the
one it replaced previous-<model>, with ECR's BatchGetImage + PutImage (retag without
pulling), against moto's ECR and, for the documented request shapes, botocore's Stubber."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.helpers import FakeDriver, handle
from tests.helpers import state as make_state
from trainship import image_pins, registry, steps
from trainship.config import Settings
from trainship.errors import RolloutFailed
from trainship.image_pins import (
    ACCEPTED_MEDIA_TYPES,
    EcrImagePins,
    EcrRepository,
    NoImagePins,
    pins_from_env,
)
from trainship.state import RolloutState

ACCOUNT = "123456789012"
REGION = "eu-west-1"
REPO = "trainship-models"
REPO_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPO}"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def manifest(n: int) -> str:
    return json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_V2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": 100 + n, "digest": "sha256:" + f"{n:x}" * 64},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 1000 + n, "digest": "sha256:" + f"{n + 1:x}" * 64}]})


@pytest.fixture()
def ecr(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        client = boto3.client("ecr", region_name=REGION)
        client.create_repository(repositoryName=REPO)
        yield client


def push(client: Any, n: int) -> str:
    """Push version n (tag iris-v<n>) as the image build does; its digest URI."""
    body = manifest(n)
    image = client.put_image(repositoryName=REPO, imageManifest=body, imageTag=f"iris-v{n}")
    digest = image["image"]["imageId"]["imageDigest"]
    return f"{REPO_URI}:iris-v{n}@{digest}"


def tags(client: Any) -> dict[str, set[str]]:
    images = client.describe_images(repositoryName=REPO)["imageDetails"]
    return {i["imageDigest"]: set(i.get("imageTags", [])) for i in images}


def test_pins_follow_promotions(ecr: Any) -> None:
    v1, v2, v3 = push(ecr, 1), push(ecr, 2), push(ecr, 3)
    pins = EcrImagePins(EcrRepository.parse(REPO_URI), ecr)  # type: ignore[arg-type]
    pins.pin("iris", v1)
    assert tags(ecr)[v1.split("@")[1]] == {"iris-v1", "live-iris"}
    pins.pin("iris", v2)
    assert tags(ecr)[v1.split("@")[1]] == {"iris-v1", "previous-iris"}
    assert tags(ecr)[v2.split("@")[1]] == {"iris-v2", "live-iris"}
    pins.pin("iris", v2)  # PromoteModel retried: ECR says ImageAlreadyExists; that is fine
    assert tags(ecr)[v2.split("@")[1]] == {"iris-v2", "live-iris"}
    assert tags(ecr)[v1.split("@")[1]] == {"iris-v1", "previous-iris"}
    pins.pin("iris", v3)
    assert tags(ecr)[v2.split("@")[1]] == {"iris-v2", "previous-iris"}
    assert tags(ecr)[v1.split("@")[1]] == {"iris-v1"}  # may expire now: nothing uses it
    digests = {d for d, t in tags(ecr).items() if t & {"live-iris", "previous-iris"}}
    assert digests == {v2.split("@")[1], v3.split("@")[1]}


def test_pins_of_one_model_leave_other_models_alone(ecr: Any) -> None:
    iris, churn = push(ecr, 1), push(ecr, 7)
    pins = EcrImagePins(EcrRepository.parse(REPO_URI), ecr)  # type: ignore[arg-type]
    pins.pin("iris", iris)
    pins.pin("churn", churn)
    assert "live-iris" in tags(ecr)[iris.split("@")[1]]
    assert "live-churn" in tags(ecr)[churn.split("@")[1]]


def test_immutable_tags_without_exclusion_fail_with_the_fix(ecr: Any) -> None:
    v1, v2 = push(ecr, 1), push(ecr, 2)
    ecr.put_image_tag_mutability(repositoryName=REPO, imageTagMutability="IMMUTABLE")
    pins = EcrImagePins(EcrRepository.parse(REPO_URI), ecr)  # type: ignore[arg-type]
    pins.pin("iris", v1)  # a new tag is allowed
    with pytest.raises(RolloutFailed) as raised:
        pins.pin("iris", v2)  # moving live-iris is not
    # (moto answers ImageAlreadyExistsException here; the pins check where the tag points)
    assert "live-iris" in raised.value.message or "previous-iris" in raised.value.message
    assert "exclusion" in raised.value.help and raised.value.step == "PromoteModel"


def test_immutable_tag_error_as_ecr_documents_it() -> None:
    """PutImage's ImageTagAlreadyExistsException: "The specified image is tagged with a tag
    that already exists. The repository is configured for tag immutability." """
    digest = "sha256:" + "d" * 64
    client = boto3.client("ecr", region_name=REGION, aws_access_key_id="x",
                          aws_secret_access_key="x")
    image = {"registryId": ACCOUNT, "repositoryName": REPO,
             "imageId": {"imageDigest": digest}, "imageManifest": manifest(4),
             "imageManifestMediaType": DOCKER_V2}
    with Stubber(client) as stub:
        stub.add_response("batch_get_image", {"images": [image], "failures": []})
        stub.add_response("batch_get_image", {"images": [], "failures": [
            {"imageId": {"imageTag": "live-iris"}, "failureCode": "ImageNotFound",
             "failureReason": "Requested image not found"}]})
        stub.add_client_error("put_image", "ImageTagAlreadyExistsException",
                              "The specified image is tagged with a tag that already exists. "
                              "The repository is configured for tag immutability.", 400)
        with pytest.raises(RolloutFailed) as raised:
            EcrImagePins(EcrRepository(ACCOUNT, REGION, REPO), client).pin(
                "iris", f"{REPO_URI}:iris-v4@{digest}")
    assert "ImageTagAlreadyExistsException" in raised.value.message
    assert "exclusion" in raised.value.help


def test_immutable_tags_with_the_pin_prefixes_excluded(ecr: Any) -> None:
    v1, v2 = push(ecr, 1), push(ecr, 2)
    ecr.put_image_tag_mutability(
        repositoryName=REPO, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[
            {"filterType": "WILDCARD", "filter": "live-*"},
            {"filterType": "WILDCARD", "filter": "previous-*"}])
    pins = EcrImagePins(EcrRepository.parse(REPO_URI), ecr)  # type: ignore[arg-type]
    pins.pin("iris", v1)
    pins.pin("iris", v2)
    assert "live-iris" in tags(ecr)[v2.split("@")[1]]
    assert "previous-iris" in tags(ecr)[v1.split("@")[1]]


def test_retag_keeps_the_manifest_and_its_media_type_as_documented() -> None:
    """The request shapes of "Retagging an image in Amazon ECR": the manifest exactly as
    BatchGetImage returned it (an OCI index here, as BuildKit's attestations make it), its
    media type and digest, under the new tag; every manifest type accepted."""
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    digest = "sha256:" + hashlib.sha256(index.encode()).hexdigest()
    client = boto3.client("ecr", region_name=REGION, aws_access_key_id="x",
                          aws_secret_access_key="x")
    repo = {"registryId": ACCOUNT, "repositoryName": REPO}
    image = {**repo, "imageId": {"imageDigest": digest}, "imageManifest": index,
             "imageManifestMediaType": OCI_INDEX}
    with Stubber(client) as stub:
        stub.add_response("batch_get_image", {"images": [image], "failures": []},
                          {**repo, "imageIds": [{"imageDigest": digest}],
                           "acceptedMediaTypes": ACCEPTED_MEDIA_TYPES})
        stub.add_response("batch_get_image", {"images": [], "failures": [
            {"imageId": {"imageTag": "live-iris"}, "failureCode": "ImageNotFound",
             "failureReason": "Requested image not found"}]},
            {**repo, "imageIds": [{"imageTag": "live-iris"}],
             "acceptedMediaTypes": ACCEPTED_MEDIA_TYPES})
        stub.add_response("put_image", {"image": {**image, "imageId": {
            "imageDigest": digest, "imageTag": "live-iris"}}},
            {**repo, "imageManifest": index, "imageManifestMediaType": OCI_INDEX,
             "imageTag": "live-iris", "imageDigest": digest})
        done = EcrImagePins(EcrRepository(ACCOUNT, REGION, REPO), client).pin(
            "iris", f"{REPO_URI}:iris-v1@{digest}")
        stub.assert_no_pending_responses()
    assert done == f"live-iris -> {digest}"


def test_throttling_is_transient_and_access_denied_is_named() -> None:
    from trainship.errors import TransientError

    client = boto3.client("ecr", region_name=REGION, aws_access_key_id="x",
                          aws_secret_access_key="x")
    pins = EcrImagePins(EcrRepository(ACCOUNT, REGION, REPO), client)
    with Stubber(client) as stub:
        stub.add_client_error("batch_get_image", "ThrottlingException", "Rate exceeded")
        with pytest.raises(TransientError):
            pins.pin("iris", f"{REPO_URI}:iris-v1@sha256:{'a' * 64}")
        stub.add_client_error("batch_get_image", "AccessDeniedException",
                              "not authorized to perform: ecr:BatchGetImage", 400)
        with pytest.raises(RolloutFailed) as raised:
            pins.pin("iris", f"{REPO_URI}:iris-v1@sha256:{'a' * 64}")
    assert "ecr:BatchGetImage" in raised.value.help


@pytest.mark.parametrize("uri, expected", [
    (REPO_URI, EcrRepository(ACCOUNT, REGION, REPO)),
    (f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com/team/models",
     EcrRepository(ACCOUNT, "us-gov-west-1", "team/models")),
    (f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn/models",
     EcrRepository(ACCOUNT, "cn-north-1", "models")),
    (f"{REPO_URI}:iris-v1@sha256:{'a' * 64}", EcrRepository(ACCOUNT, REGION, REPO)),
    ("127.0.0.1:5000/trainship-models", None),
    ("local", None),
    ("", None),
])
def test_repository_uri(uri: str, expected: EcrRepository | None) -> None:
    assert EcrRepository.parse(uri) == expected


def test_pins_driver_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINSHIP_IMAGE_REPOSITORY", REPO_URI)
    pins = pins_from_env()
    assert isinstance(pins, EcrImagePins) and pins.repository.name == REPO
    assert pins.client.meta.region_name == REGION
    monkeypatch.setenv("TRAINSHIP_IMAGE_REPOSITORY", "127.0.0.1:5000/trainship-models")
    assert isinstance(pins_from_env(), NoImagePins)


def test_an_image_outside_the_repository_is_refused(ecr: Any) -> None:
    pins = EcrImagePins(EcrRepository.parse(REPO_URI), ecr)  # type: ignore[arg-type]
    with pytest.raises(RolloutFailed):
        pins.pin("iris", f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/other:x@sha256:{'a' * 64}")


# --- PromoteModel ----------------------------------------------------------------------

class RecordingPins:
    def __init__(self, fail: bool = False) -> None:
        self.pinned: list[tuple[str, str]] = []
        self.fail = fail

    def pin(self, model_name: str, image_uri: str) -> str:
        if self.fail:
            raise RolloutFailed("could not pin", step="PromoteModel")
        self.pinned.append((model_name, image_uri))
        return "pinned"


class SupersededDriver(FakeDriver):
    def promote(self, handle: dict[str, Any], *, replace_higher: bool = False) -> str | None:
        return "9"


def promote_state(tmp_path: Path) -> Any:
    return make_state(tmp_path, model={
        "deployment_id": "d-1", "name": "m", "version": "2", "run_id": "r",
        "model_uri": "models:/m-1", "source": "s"},
        rollout=RolloutState(handle=handle("2"), image_uri=f"{REPO_URI}:m-v2@sha256:"
                             + "b" * 64, inference_url="http://h").model_dump())


@pytest.fixture()
def aliases(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    moved: list[str] = []
    monkeypatch.setattr(registry, "promote", lambda **kw: moved.append(kw["version"]))
    return moved


def test_promotion_pins_the_serving_image_before_moving_the_alias(tmp_path: Path,
                                                                  aliases: list[str]) -> None:
    pins = RecordingPins()
    s = steps.promote_model(promote_state(tmp_path), settings=Settings.from_env(),
                            driver=FakeDriver([]), pins=pins)
    assert pins.pinned == [("m", f"{REPO_URI}:m-v2@sha256:" + "b" * 64)]
    assert aliases == ["2"] and s.result is not None and s.result.live


def test_a_failed_pin_leaves_the_alias_where_it_was(tmp_path: Path,
                                                    aliases: list[str]) -> None:
    with pytest.raises(RolloutFailed):
        steps.promote_model(promote_state(tmp_path), settings=Settings.from_env(),
                            driver=FakeDriver([]), pins=RecordingPins(fail=True))
    assert aliases == []


def test_a_superseded_version_pins_nothing(tmp_path: Path, aliases: list[str]) -> None:
    pins = RecordingPins()
    s = steps.promote_model(promote_state(tmp_path), settings=Settings.from_env(),
                            driver=SupersededDriver([]), pins=pins)
    assert pins.pinned == [] and aliases == []
    assert s.result is not None and s.result.superseded_by == "9"


def test_local_registries_need_no_pins() -> None:
    assert "nothing to pin" in image_pins.NoImagePins().pin("m", "/x/trainship-models:m-v1@"
                                                            "sha256:" + "c" * 64)


# --- does a version's image still exist (a rollback serves it again) --------------------

def test_ecr_knows_whether_an_image_still_exists(ecr: Any) -> None:
    pins = EcrImagePins(EcrRepository.parse(REPO_URI), ecr)  # type: ignore[arg-type]
    v1, v2 = push(ecr, 1), push(ecr, 2)
    assert pins.exists(v1) and pins.exists(v2)
    # expired by the lifecycle policy: DescribeImages answers ImageNotFoundException
    ecr.batch_delete_image(repositoryName=REPO, imageIds=[{"imageDigest": v1.split("@")[1]}])
    assert not pins.exists(v1) and pins.exists(v2)
    assert not pins.exists(f"{REPO_URI}:iris-v1")  # no digest: nothing to serve by
    assert not pins.exists(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/gone:t@" +
                           v2.split("@")[1])


def test_local_images_exist_while_their_bundle_does(tmp_path: Path) -> None:
    from trainship.bundles import push_bundle, resolve_bundle

    context = tmp_path / "context"
    context.mkdir()
    (context / "MLmodel").write_text("flavors: {}\n")
    uri = push_bundle(context, tmp_path / "registry", "trainship-models", "iris-v1")
    assert NoImagePins().exists(uri)
    resolve_bundle(uri).rename(tmp_path / "elsewhere")
    assert not NoImagePins().exists(uri)


def test_local_registry_images_are_asked_of_the_registry() -> None:
    import http.server
    import threading

    digest = "sha256:" + "a" * 64

    class Registry(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            found = self.path == f"/v2/trainship-models/manifests/{digest}"
            self.send_response(200 if found else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        assert NoImagePins().exists(f"{host}/trainship-models:iris-v1@{digest}")
        assert not NoImagePins().exists(f"{host}/trainship-models:iris-v2@sha256:" + "b" * 64)
    finally:
        server.shutdown()
