"""Names (issue 11): the registered-model name as written, the DNS-1123 serving name derived
from it (trainship.names, the one source), and every DNS-1123 consumer using it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainship import registry
from trainship.cluster.manifests import WorkloadSpec, render
from trainship.cluster.podman import pod_name, podman_manifest
from trainship.cluster.process import ProcessDriver
from trainship.errors import ServingNameTaken, error_class
from trainship.image import image_tag
from trainship.image_pins import live_tag, previous_tag
from trainship.names import (
    MAX_MODEL_NAME_CHARS,
    MODEL_NAME_PATTERN,
    RESERVED_TAG_PREFIXES,
    model_name_problem,
    reserved_name_problem,
    serving_name,
)

# Kubernetes' own definitions (apimachinery validation): RFC 1123 label, RFC 1035 label.
K8S_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
K8S_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
ECR_TAG = re.compile(r"^[a-zA-Z0-9-_.]{1,128}$")  # ECR's imageTag pattern and length
IMAGE = "127.0.0.1:5000/trainship-models:x@sha256:" + "a" * 64


def valid_label(name: str) -> bool:
    return len(name) <= 63 and bool(K8S_DNS1123_LABEL.match(name)) \
        and bool(K8S_DNS1035_LABEL.match(name))


@pytest.mark.parametrize("model_name, expected", [
    ("test_model", "test-model"),
    ("Test_Model", "test-model"),
    ("test.model", "test-model"),
    ("test-model", "test-model"),
    ("customer_churn", "customer-churn"),
    ("my_model", "my-model"),
    ("Iris.v2", "iris-v2"),
    ("iris-classifier", "iris-classifier"),
    ("a__b", "a-b"),
    ("x_", "x"),
    ("m", "m"),
    ("UPPER", "upper"),
    ("2024_churn", "m-2024-churn"),
    ("7", "m-7"),
])
def test_serving_name_table(model_name: str, expected: str) -> None:
    assert serving_name(model_name) == expected
    assert model_name_problem(model_name) is None


def test_a_long_name_keeps_a_stable_hash_suffix() -> None:
    long_a = "customer_churn_" + "x" * 100 + "_a"
    long_b = "customer_churn_" + "x" * 100 + "_b"
    name_a, name_b = serving_name(long_a), serving_name(long_b)
    assert len(name_a) == len(name_b) == 63
    assert name_a != name_b  # the hash of the whole registered name tells them apart
    assert name_a.startswith("customer-churn-xxx") and re.search(r"-[0-9a-f]{8}$", name_a)
    assert serving_name(long_a) == name_a  # deterministic
    assert serving_name("a" * MAX_MODEL_NAME_CHARS).endswith(
        "-" + __import__("hashlib").sha256(b"a" * MAX_MODEL_NAME_CHARS).hexdigest()[:8])


MODEL_NAMES = st.from_regex(re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")).filter(
    lambda n: model_name_problem(n) is None)


@settings(max_examples=400, deadline=None)
@given(MODEL_NAMES)
def test_every_accepted_name_has_a_valid_stable_serving_name(name: str) -> None:
    served = serving_name(name)
    assert valid_label(served), (name, served)
    assert serving_name(name) == served            # deterministic
    assert serving_name(served) == served          # a serving name is its own serving name
    assert ECR_TAG.match(image_tag(name, "123")) and ECR_TAG.match(live_tag(name))
    assert ECR_TAG.match(previous_tag(name))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=140))
def test_the_python_rule_and_the_schema_pattern_agree(name: str) -> None:
    # fullmatch: ECMA 262's $ (JSON Schema) does not match before a final newline
    by_pattern = bool(re.fullmatch(MODEL_NAME_PATTERN, name)) and 1 <= len(name) <= 128
    assert (model_name_problem(name) is None) == by_pattern, name


@pytest.mark.parametrize("name", ["live", "live-demo", "Live_Demo", "previous", "previous-x",
                                  "buildcache", "BuildCache-1"])
def test_names_whose_image_tags_would_look_like_trainships_own_are_refused(name: str) -> None:
    """A version's tag is <serving name>-v<N>: with these it would start with live-,
    previous- or buildcache-, tags the repository keeps mutable and its lifecycle policy
    never expires (or counts as build caches)."""
    problem = reserved_name_problem(name)
    assert problem is not None and "trainship's own image tags" in problem
    assert model_name_problem(name) is None  # an existing model keeps its day-two operations
    tag = image_tag(name, "1")
    assert tag.startswith(RESERVED_TAG_PREFIXES)


@pytest.mark.parametrize("name", ["lively", "previously", "buildcaches", "olive-1",
                                  "my-live-model"])
def test_names_that_only_resemble_them_are_accepted(name: str) -> None:
    assert model_name_problem(name) is None and reserved_name_problem(name) is None
    assert not image_tag(name, "1").startswith(RESERVED_TAG_PREFIXES)


@pytest.mark.parametrize("name", ["", "a b", "a/b", "..", "a..b", ".a", "a.", "_a", "-a",
                                  "a\x00", "a\nb", "a\n", "a\tb", "é", "a" * 129, "a:b", "a+b"])
def test_names_that_are_neither_are_refused(name: str) -> None:
    assert model_name_problem(name) is not None


def test_manifests_use_the_serving_name_and_keep_the_registered_one() -> None:
    spec = WorkloadSpec("test_model", "3", IMAGE, replicas=2, max_replicas=4)
    objects = render(spec)
    assert {obj["kind"] for obj in objects} == {
        "Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget",
        "HorizontalPodAutoscaler"}
    for obj in objects:
        meta = obj["metadata"]
        assert meta["name"] == "test-model"
        assert all(valid_label(v) or v.startswith("v") for v in meta["labels"].values())
        assert meta["labels"]["app.kubernetes.io/instance"] == "test-model"
        assert meta["annotations"]["trainship.io/model-name"] == "test_model"
        assert meta["annotations"]["trainship.io/serving-name"] == "test-model"
    deployment = objects[0]
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "test-model", "app.kubernetes.io/instance": "test-model"}
    env = {e["name"]: e["value"] for e in
           deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRAINSHIP_MODEL_NAME"] == "test_model"
    hpa = objects[-1]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "test-model"


def test_podman_names_use_the_serving_name() -> None:
    spec = WorkloadSpec("Test_Model", "2", IMAGE)
    assert podman_manifest(spec, 12345, Path("/auth"))["metadata"]["name"] == "test-model-v2"
    assert pod_name("Test_Model", "2") == "test-model-v2-pod-0"


def test_image_tags_and_pins_use_the_serving_name() -> None:
    assert image_tag("test_model", "4") == "test-model-v4"
    assert live_tag("test_model") == "live-test-model"
    assert previous_tag("Test.Model") == "previous-test-model"


def test_process_driver_records_live_under_the_serving_name(tmp_path: Path) -> None:
    driver = ProcessDriver(tmp_path)
    record = {"model_name": "test_model", "serving_name": "test-model", "version": "1",
              "image_uri": "bundle:sha256:0", "deployment_id": "d-1", "port": 8081,
              "url": "http://127.0.0.1:8080", "test_url": "http://127.0.0.1:8081",
              "state": "serving", "pid": 1, "log": "v1.log", "requirements": []}
    path = driver._record_path("test_model", "1")
    assert path == tmp_path / "test-model" / "v1.json"
    path.parent.mkdir(parents=True)
    path.write_text(__import__("json").dumps(record))
    assert driver.records("test_model") == [record]
    assert driver.records("test.model") == [record]  # one serving name, one directory


# --- the collision check in RegisterModel (a real MLflow registry on sqlite) ----------------

@pytest.fixture()
def client(registry_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)


def test_the_first_name_claims_its_serving_name(client: Any) -> None:
    assert registry.claim_serving_name(client, "test_model") == "test-model"
    model = client.get_registered_model("test_model")
    assert model.tags[registry.SERVING_NAME_TAG] == "test-model"
    # the same name again is the same model: more versions, no conflict
    assert registry.claim_serving_name(client, "test_model") == "test-model"


@pytest.mark.parametrize("second", ["test.model", "Test_Model", "test-model"])
def test_a_second_name_with_the_same_serving_name_is_refused(client: Any, second: str) -> None:
    registry.claim_serving_name(client, "test_model")
    with pytest.raises(ServingNameTaken) as caught:
        registry.claim_serving_name(client, second)
    doc = caught.value.document()
    assert doc.error == "ServingNameTaken" and doc.step == "RegisterModel"
    assert "'test_model'" in doc.help and "test-model" in doc.message
    assert error_class("ServingNameTaken") is ServingNameTaken  # RecordFailure keeps it
    names = {m.name for m in client.search_registered_models()}
    assert names == {"test_model"}  # nothing created for the refused name


def test_a_model_registered_under_the_serving_name_before_tags_is_found(
        client: Any, tmp_path: Path) -> None:
    client.create_registered_model("test-model")  # deployed before serving names existed
    (tmp_path / "model").mkdir()
    client.create_model_version("test-model", (tmp_path / "model").as_uri())
    with pytest.raises(ServingNameTaken) as caught:
        registry.claim_serving_name(client, "test_model")
    assert "'test-model'" in caught.value.help


def test_an_untagged_model_with_another_name_does_not_block(client: Any) -> None:
    client.create_registered_model("Test_Model")  # registered outside trainship, never served
    assert registry.claim_serving_name(client, "test_model") == "test-model"


def test_status_shows_both_names(capsys: pytest.CaptureFixture[str]) -> None:
    from trainship.terminal import report

    record = {"status": "SUCCEEDED", "deployment_id": "d-1", "result": {
        "status": "SUCCEEDED", "deployment_id": "d-1", "inference_url": "http://127.0.0.1:9",
        "model_name": "test_model", "serving_name": "test-model", "model_version": "1",
        "image_uri": "r/trainship-models:test-model-v1@sha256:" + "a" * 64,
        "deployment_time_seconds": 3.0}}
    assert report(record, "text") == 0
    out = capsys.readouterr().out
    assert re.search(r"^model_name:\s+test_model$", out, re.M)
    assert re.search(r"^serving_name:\s+test-model$", out, re.M)


def test_a_model_under_the_serving_name_without_versions_does_not_block(client: Any) -> None:
    client.create_registered_model("test-model")  # registered, never given a version
    assert registry.claim_serving_name(client, "test_model") == "test-model"


def test_two_names_claimed_at_once_leave_one_owner(client: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Both passed the first check (a race): the registered model created first keeps the
    serving name; the later one is refused and drops its tag, so it blocks nobody."""
    client.create_registered_model("test.model", tags={registry.SERVING_NAME_TAG: "test-model"})
    real = registry.serving_name_owners
    calls: list[str] = []

    def first_check_misses(c: Any, name: str, serving: str) -> list[str]:
        calls.append(name)
        return [] if len(calls) == 1 else real(c, name, serving)

    monkeypatch.setattr(registry, "serving_name_owners", first_check_misses)
    with pytest.raises(ServingNameTaken) as caught:
        registry.claim_serving_name(client, "test_model")
    assert "'test.model'" in caught.value.help
    assert registry.SERVING_NAME_TAG not in client.get_registered_model("test_model").tags
    monkeypatch.setattr(registry, "serving_name_owners", real)
    assert registry.claim_serving_name(client, "test.model") == "test-model"  # still its own
