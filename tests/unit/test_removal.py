"""RemoveModel's logic (trainship.removal) on a real MLflow registry: the alias moves off,
serving periods close, versions stay unless purged; refused while a deployment runs; the
purge of images (process mode's bundles; ECR against moto); the delete's path through the
real ASL interpreter; RecordFailure after a failed delete undoes nothing."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from trainship import bundles, removal, served, steps
from trainship.config import Settings
from trainship.deployments import DeploymentStore
from trainship.errors import DeploymentInProgress, ModelNotFound, document_from_cause
from trainship.image_pins import EcrImagePins, EcrRepository, NoImagePins
from trainship.local import sfn
from trainship.local.daemon import render_definition, substitutions
from trainship.local.lambda_runtime import invoke_lambda
from trainship.local.sfn import lambda_error_cause


@pytest.fixture()
def settings(tmp_path: Path, registry_uri: str) -> Settings:
    """A registry with test_model v1..v3; v2 live on podman (v1 served before)."""
    from mlflow import MlflowClient

    uri = registry_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("test_model")
    (tmp_path / "model").mkdir()
    for _ in range(3):
        client.create_model_version("test_model", (tmp_path / "model").as_uri())
    for version in ("1", "2"):
        served.mark_live(client, model_name="test_model", version=version,
                         image_uri=f"img:v{version}", inference_url="http://127.0.0.1:9",
                         target="podman", deployment_id=f"d-{version}")
        client.set_registered_model_alias("test_model", "live", version)
    return Settings(staging_uri=str(tmp_path), tracking_uri=uri, cluster="process",
                    model_alias="live", rollout_timeout_seconds=60, rollout_poll_seconds=1,
                    state_machine_arn="", archive_dir="", home=tmp_path,
                    targets=("process", "podman"))


class Driver:
    """A driver that records its lock and what it is asked to remove."""

    def __init__(self, name: str, log: list[str], serves: list[str]) -> None:
        self.name, self.log, self.serves = name, log, serves

    @contextlib.contextmanager
    def lock(self, model_name: str) -> Iterator[None]:
        self.log.append(f"lock {self.name}")
        yield
        self.log.append(f"unlock {self.name}")

    def remove(self, model_name: str) -> list[str]:
        self.log.append(f"remove {self.name} {model_name}")
        found, self.serves[:] = list(self.serves), []
        return found


def event(purge: bool = False) -> removal.RemoveEvent:
    return removal.RemoveEvent.model_validate({
        "request": {"action": "delete", "model_name": "test_model", "purge": purge},
        "deployment_id": "d-del"})


class Pins(NoImagePins):
    def __init__(self) -> None:
        self.purged: list[tuple[str, list[str]]] = []

    def purge(self, model_name: str, image_uris: list[str]) -> list[str]:
        self.purged.append((model_name, image_uris))
        return image_uris


def client_of(settings: Settings) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def test_delete_removes_on_each_target_moves_the_alias_off_and_keeps_versions(
        settings: Settings) -> None:
    log: list[str] = []
    serving = {"podman": ["pod test-model-v2-pod-0"], "process": []}
    drivers = {name: Driver(name, log, serving[name]) for name in serving}
    result = removal.remove_model(event(), settings=settings, drivers=drivers.__getitem__,
                                  pins=Pins())
    # the live version's target first, under each driver's lock
    assert log == ["lock podman", "remove podman test_model", "unlock podman",
                   "lock process", "remove process test_model", "unlock process"]
    assert result.removed == ["podman: pod test-model-v2-pod-0", "alias live (was version 2)"]
    assert result.alias_removed == "2" and not result.purged
    assert "kept" in result.message
    client = client_of(settings)
    assert "live" not in client.get_registered_model("test_model").aliases
    versions = served.versions(client, "test_model")
    assert [v.version for v in versions] == ["3", "2", "1"]  # the registry keeps them
    assert all(p["to"] is not None for v in versions for p in v.periods)  # periods closed

    again = removal.remove_model(event(), settings=settings, drivers=drivers.__getitem__,
                                 pins=Pins())
    assert again.removed == [] and again.alias_removed is None
    assert again.message.startswith("test_model served nothing: nothing to remove")


def test_purge_deletes_the_images_and_the_registered_model(settings: Settings) -> None:
    pins = Pins()
    result = removal.remove_model(event(purge=True), settings=settings,
                                  drivers=lambda name: Driver(name, [], []), pins=pins)
    assert pins.purged == [("test_model", ["img:v2", "img:v1"])]
    assert result.purged and result.purged_versions == ["3", "2", "1"]
    assert result.purged_images == ["img:v2", "img:v1"]
    with pytest.raises(ModelNotFound):  # gone from the registry: a delete now is a 404
        removal.remove_model(event(), settings=settings,
                             drivers=lambda name: Driver(name, [], []), pins=pins)


def test_a_deployment_running_under_the_lock_refuses_before_anything_changes(
        settings: Settings) -> None:
    log: list[str] = []
    with pytest.raises(DeploymentInProgress) as caught:
        removal.remove_model(event(), settings=settings,
                             drivers=lambda name: Driver(name, log, ["x"]), pins=Pins(),
                             running=lambda: ["d-deploying"])
    assert "d-deploying" in caught.value.details
    assert not [line for line in log if line.startswith("remove")]
    assert client_of(settings).get_registered_model("test_model").aliases == {"live": 2}


def test_a_target_that_cannot_be_reached_is_noted_unless_it_serves(settings: Settings) -> None:
    def drivers(name: str) -> Any:
        if name == "process":
            raise ValueError("no such driver here")
        return Driver(name, [], [])

    result = removal.remove_model(event(), settings=settings, drivers=drivers, pins=Pins())
    assert "target process not searched (no such driver here)" in result.message

    def live_unreachable(name: str) -> Any:
        raise ValueError("podman is not installed")

    client_of(settings).set_registered_model_alias("test_model", "live", "2")
    with pytest.raises(ValueError):
        removal.remove_model(event(), settings=settings, drivers=live_unreachable,
                             pins=Pins())


def test_unknown_model_is_model_not_found(settings: Settings) -> None:
    with pytest.raises(ModelNotFound):
        removal.registered(client_of(settings), "unknown_model")


# --- image purges ------------------------------------------------------------------------

def test_bundle_purge_deletes_the_bundles_and_their_tags(tmp_path: Path) -> None:
    uris = []
    for version in ("1", "2"):
        context = tmp_path / f"ctx{version}"
        context.mkdir()
        (context / "model").write_text(version)
        uris.append(bundles.push_bundle(context, tmp_path / "registry", "trainship-models",
                                        f"test-model-v{version}"))
    other = tmp_path / "ctx9"
    other.mkdir()
    (other / "model").write_text("9")
    kept = bundles.push_bundle(other, tmp_path / "registry", "trainship-models", "iris-v9")
    assert NoImagePins().purge("test_model", [*uris, "img:v0"]) == uris
    assert not [u for u in uris if bundles.resolve_bundle(u).exists()]
    tags = tmp_path / "registry" / "trainship-models" / "tags"
    assert sorted(p.name for p in tags.iterdir()) == ["iris-v9"]
    assert bundles.resolve_bundle(kept).exists()


ACCOUNT, REGION, REPO = "123456789012", "eu-west-1", "trainship-models"
REPO_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPO}"


def test_ecr_purge_deletes_the_models_images_by_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        ecr = boto3.client("ecr", region_name=REGION)
        ecr.create_repository(repositoryName=REPO)

        def push(tag: str, n: int) -> str:
            body = json.dumps({"schemaVersion": 2, "n": n, "mediaType":
                               "application/vnd.docker.distribution.manifest.v2+json"})
            image = ecr.put_image(repositoryName=REPO, imageManifest=body, imageTag=tag)
            return f"{REPO_URI}:{tag}@{image['image']['imageId']['imageDigest']}"

        v1, v2, churn = push("test-model-v1", 1), push("test-model-v2", 2), push("churn-v1", 3)
        pins = EcrImagePins(EcrRepository.parse(REPO_URI), ecr)  # type: ignore[arg-type]
        pins.pin("test_model", v1)
        deleted = pins.purge("test_model", [v1])  # v2 never served: found by its tag
        assert sorted(d.split("@")[1] for d in deleted) == sorted(
            u.split("@")[1] for u in (v1, v2))
        left = ecr.describe_images(repositoryName=REPO)["imageDetails"]
        assert [i["imageTags"] for i in left] == [["churn-v1"]]
        assert churn.split("@")[1] == left[0]["imageDigest"]
        assert pins.purge("test_model", [v1]) == []  # idempotent


# --- executions for the model ---------------------------------------------------------------

def test_running_executions_finds_the_models_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("stepfunctions", region_name="us-east-1")
        arn = client.create_state_machine(
            name="t", roleArn="arn:aws:iam::123456789012:role/t", definition=json.dumps(
                {"StartAt": "W", "States": {"W": {"Type": "Pass", "End": True}}})
        )["stateMachineArn"]
        store = DeploymentStore(client, arn)
        for name, body in (("d-a", {"model_name": "test_model", "script": "x"}),
                           ("d-b", {"model_name": "other"}),
                           ("d-c", {"action": "delete", "model_name": "test_model"})):
            store.start(name, body)
        assert sorted(store.running_for("test_model")) == ["d-a", "d-c"]
        assert store.running_for("test_model", exclude="d-c") == ["d-a"]


def test_running_executions_asks_list_executions_what_aws_accepts() -> None:
    """AWS answers ListExecutions with a stateMachineArn and statusFilter PENDING_REDRIVE
    with a ValidationException (moto accepts it): the stub answers as AWS does, so a
    second query for PENDING_REDRIVE fails this test."""
    from botocore.stub import Stubber

    client = boto3.client("stepfunctions", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:TrainAndDeploy"
    execution = f"{arn.replace(':stateMachine:', ':execution:')}:d-a"
    when = datetime(2026, 12, 1, tzinfo=UTC)
    with Stubber(client) as stub:
        stub.add_response("list_executions", {"executions": [
            {"executionArn": execution, "stateMachineArn": arn, "name": "d-a",
             "status": "RUNNING", "startDate": when}]},
            {"stateMachineArn": arn, "statusFilter": "RUNNING"})
        stub.add_response("describe_execution", {
            "executionArn": execution, "stateMachineArn": arn, "status": "RUNNING",
            "startDate": when, "input": json.dumps({"model_name": "test_model"})},
            {"executionArn": execution})
        stub.add_client_error("list_executions", "ValidationException",
                              expected_params={"stateMachineArn": arn,
                                               "statusFilter": "PENDING_REDRIVE"})
        assert DeploymentStore(client, arn).running_for("test_model") == ["d-a"]


# --- the state machine's delete path (the real ASL file, moto's interpreter) ------------------

@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        client = boto3.client("stepfunctions", region_name="us-east-1")
        arn = client.create_state_machine(
            name="TrainAndDeploy", roleArn="arn:aws:iam::123456789012:role/t",
            definition=render_definition(substitutions()))["stateMachineArn"]
        yield client, arn
    sfn.uninstall()


def execute(client: Any, arn: str, payload: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    started = client.start_execution(stateMachineArn=arn, name="d-del",
                                     input=json.dumps(payload))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        described = client.describe_execution(executionArn=started["executionArn"])
        if described["status"] != "RUNNING":
            events = client.get_execution_history(executionArn=started["executionArn"])
            return described, [e["stateEnteredEventDetails"]["name"] for e in events["events"]
                               if "stateEnteredEventDetails" in e]
        time.sleep(0.05)
    raise AssertionError("the execution did not finish")


def step_of(params: dict[str, Any]) -> str:
    return str(params["FunctionName"]).rsplit("trainship-", 1)[1]


def test_a_delete_goes_route_remove_model_succeed(machine: tuple[Any, str]) -> None:
    client, arn = machine
    seen: list[tuple[str, Any]] = []

    def route(resource: str, params: dict[str, Any]) -> Any:
        seen.append((step_of(params), params["Payload"]))
        return {"Payload": {"status": "SUCCEEDED", "action": "delete", "removed": []}}

    sfn.install(route)
    described, states = execute(client, arn, {"action": "delete", "model_name": "test_model"})
    assert described["status"] == "SUCCEEDED"
    assert states == ["Route", "RemoveModel", "ModelRemoved"]
    # RemoveModel gets the input and the execution's name; purge defaults to false there
    assert seen == [("RemoveModel", {"request": {"action": "delete", "model_name": "test_model"},
                                     "deployment_id": "d-del"})]
    parsed = removal.RemoveEvent.model_validate(seen[0][1])
    assert parsed.request.purge is False
    assert json.loads(described["output"])["action"] == "delete"


def test_no_action_is_a_deployment(machine: tuple[Any, str]) -> None:
    client, arn = machine

    def route(resource: str, params: dict[str, Any]) -> Any:
        step = step_of(params)
        if step == "ValidateRequest":
            raise sfn.TaskFailure("InvalidRequest", json.dumps({"errorMessage": "bad"}))
        return {"Payload": {"error": "InvalidRequest", "cause": "{}"}}

    sfn.install(route)
    _, states = execute(client, arn, {"model_name": "test_model"})
    assert states[:2] == ["Route", "ValidateRequest"] and "RemoveModel" not in states


def test_a_failed_delete_is_recorded_and_undoes_nothing(machine: tuple[Any, str]) -> None:
    client, arn = machine
    error = {"error": "RemovalFailed", "message": "403", "details": "", "help": "h",
             "step": "RemoveModel"}

    def route(resource: str, params: dict[str, Any]) -> Any:
        if step_of(params) == "RemoveModel":
            raise sfn.TaskFailure("RemovalFailed", json.dumps(
                {"errorType": "RemovalFailed", "errorMessage": json.dumps(error)}))
        if step_of(params) == "DeploymentFailed":  # the real handler: raises the recorded error
            try:
                return {"Payload": invoke_lambda("DeploymentFailed", params["Payload"])}
            except Exception as exc:
                raise sfn.TaskFailure(type(exc).__name__, lambda_error_cause(exc, [])) from exc
        # RecordFailure's logic: a delete's state has no rollout, so no cluster is built
        context = steps.FailureContext.model_validate(params["Payload"])

        def no_cluster() -> Any:
            raise AssertionError("RecordFailure must not touch the cluster after a delete")

        return {"Payload": steps.record_failure(context, cluster=no_cluster)}

    sfn.install(route)
    described, states = execute(client, arn, {"action": "delete", "model_name": "test_model",
                                              "purge": True})
    assert states == ["Route", "RemoveModel", "RemoveModelCaught", "RecordFailure",
                      "DeploymentFailed"]
    assert described["status"] == "FAILED" and described["error"] == "RemovalFailed"
    document = document_from_cause(described["cause"])
    assert document is not None and document.step == "RemoveModel"
