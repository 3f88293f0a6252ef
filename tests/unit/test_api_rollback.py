"""POST /models/{model_name}/rollback through the API function: checked against a real MLflow
registry (sqlite) and the image's bundle, the execution started on moto's Step Functions;
every answer checked against docs/openapi.json's schema for it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from jsonschema import Draft202012Validator
from moto import mock_aws

from lambdas.api import handler
from tests.helpers import LambdaContext, api_gateway_event
from trainship import openapi, served
from trainship.bundles import push_bundle

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

DOCUMENT = openapi.document()
ROUTE = "/models/{model_name}/rollback"
MODEL = "test_model"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """test_model: v1 and v2 served (v2 live), v3 never; v1's image a real bundle, v2's
    bundle gone."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(MODEL)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "MLmodel").write_text("flavors: {}\n")
    images = {}
    for n in (1, 2, 3):
        client.create_model_version(MODEL, (tmp_path / "model").as_uri())
        images[str(n)] = push_bundle(tmp_path / "model", tmp_path / "registry",
                                     "trainship-models", f"test-model-v{n}")
    for n in ("1", "2"):
        served.mark_live(client, model_name=MODEL, version=n, image_uri=images[n],
                         inference_url="http://127.0.0.1:9000", target="process",
                         deployment_id=f"d-{n}")
        client.set_registered_model_alias(MODEL, "live", n)
    client.create_registered_model("expired")
    client.create_model_version("expired", (tmp_path / "model").as_uri())
    served.mark_live(client, model_name="expired", version="1", target="process",
                     image_uri=f"{tmp_path}/registry/gone:expired-v1@sha256:" + "0" * 64,
                     inference_url="http://127.0.0.1:9001", deployment_id="d-e")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("TRAINSHIP_IMAGE_REPOSITORY", raising=False)
    return images


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Step Functions whose executions stay RUNNING."""
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "TRAINSHIP_TARGETS": "process"
                        }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TRAINSHIP_ARCHIVE_DIR", raising=False)
    with mock_aws():
        client = boto3.client("stepfunctions")
        arn = client.create_state_machine(
            name="TrainAndDeploy", roleArn="arn:aws:iam::123456789012:role/sfn",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}))
        monkeypatch.setenv("STATE_MACHINE_ARN", arn["stateMachineArn"])
        yield client


def post(model_name: str, body: Any) -> tuple[int, Any]:
    path = f"/models/{model_name}/rollback"
    response = handler(api_gateway_event("POST", path, resource=ROUTE, body=body,
                                         path_parameters={"model_name": model_name}),
                       LambdaContext())
    answer = json.loads(response["body"])
    responses = DOCUMENT["paths"][ROUTE]["post"]["responses"]
    schema = (responses.get(str(response["statusCode"])) or responses["default"])[
        "content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": DOCUMENT["components"]}).validate(answer)
    return response["statusCode"], answer


def executions(sfn: Any) -> list[dict[str, Any]]:
    arn = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    return sfn.list_executions(stateMachineArn=arn)["executions"]


def test_a_rollback_starts_the_execution_with_the_action(
        sfn: Any, registry: dict[str, str]) -> None:
    status, accepted = post(MODEL, {"version": "1"})
    assert status == 202 and accepted["status"] == "RUNNING"
    assert accepted["status_url"] == f"/deployments/{accepted['deployment_id']}"
    [execution] = executions(sfn)
    assert execution["name"] == accepted["deployment_id"]
    given = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert given == {"action": "rollback", "model_name": MODEL, "version": "1"}
    # while it runs, another rollback (or a delete) of the model is refused
    status, doc = post(MODEL, {"version": 1})
    assert status == 409 and doc["error"] == "DeploymentInProgress"
    assert accepted["deployment_id"] in doc["details"]
    assert len(executions(sfn)) == 1


@pytest.mark.parametrize(("model", "body", "status", "error"), [
    ("nobody", {"version": "1"}, 404, "ModelNotFound"),
    (MODEL, {"version": "7"}, 404, "ModelVersionNotFound"),
    (MODEL, {"version": "2"}, 409, "VersionAlreadyLive"),
    (MODEL, {"version": "3"}, 409, "VersionNeverServed"),
    ("expired", {"version": "1"}, 409, "ImageNotFound"),
    (MODEL, {"version": "one"}, 400, "InvalidRequest"),
    (MODEL, {"to": "1"}, 400, "InvalidRequest"),
    (MODEL, "not json", 400, "InvalidRequest"),
])
def test_refusals_are_error_documents_and_start_nothing(
        sfn: Any, registry: dict[str, str], model: str, body: Any, status: int,
        error: str) -> None:
    got, doc = post(model, body)
    assert (got, doc["error"]) == (status, error), doc
    assert doc["help"] and doc["message"]
    assert executions(sfn) == []


def test_the_route_is_in_the_document() -> None:
    operation = DOCUMENT["paths"][ROUTE]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RollbackRequest"}
    assert not openapi.takes_deployment_request(operation)
