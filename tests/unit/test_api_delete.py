"""DELETE /models/{model_name} on the API function (lambdas/api.py), against Step Functions
in moto and a real MLflow registry: 202 and the delete's execution input; ModelNotFound and
DeploymentInProgress with nothing started; every answer checked against docs/openapi.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdas.api import handler
from tests.helpers import LambdaContext, api_gateway_event
from tests.unit.api_harness import MACHINE, conforms, mocked_state_machine

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")
RESOURCE = "/models/{model_name}"


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Step Functions whose executions stay RUNNING; a registry with test_model."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model("test_model")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield from mocked_state_machine(monkeypatch, MACHINE, {})


def delete(name: str, query: dict[str, str] | None = None) -> tuple[int, Any]:
    event = api_gateway_event("DELETE", f"/models/{name}", resource=RESOURCE,
                              path_parameters={"model_name": name})
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in (query or {}).items()} \
        if query else None
    response = handler(event, LambdaContext())
    body = json.loads(response["body"])
    conforms(RESOURCE, "delete", response["statusCode"], body)
    return response["statusCode"], body


def executions(sfn: Any) -> list[dict[str, Any]]:
    arn = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    return [sfn.describe_execution(executionArn=e["executionArn"])
            for e in sfn.list_executions(stateMachineArn=arn)["executions"]]


@pytest.mark.parametrize("query,purge", [(None, False), ({"purge": "true"}, True),
                                         ({"purge": "false"}, False)])
def test_delete_starts_the_delete_execution(sfn: Any, query: Any, purge: bool) -> None:
    status, body = delete("test_model", query)
    assert status == 202 and body["status"] == "RUNNING"
    assert body["status_url"] == f"/deployments/{body['deployment_id']}"
    [execution] = executions(sfn)
    assert execution["name"] == body["deployment_id"]
    assert json.loads(execution["input"]) == {"action": "delete", "model_name": "test_model",
                                              "purge": purge}


def test_unknown_model_is_404_and_starts_nothing(sfn: Any) -> None:
    status, body = delete("unknown_model")
    assert (status, body["error"]) == (404, "ModelNotFound") and body["help"]
    assert executions(sfn) == []


def test_a_running_deployment_of_the_model_is_409_and_starts_nothing(sfn: Any) -> None:
    arn = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    sfn.start_execution(stateMachineArn=arn, name="d-running",
                        input=json.dumps({"model_name": "test_model", "script": "x"}))
    status, body = delete("test_model")
    assert (status, body["error"]) == (409, "DeploymentInProgress")
    assert "d-running" in body["details"] and "trainship status d-running" in body["help"]
    assert [e["name"] for e in executions(sfn)] == ["d-running"]


def test_a_bad_purge_value_is_invalid_request(sfn: Any) -> None:
    status, body = delete("test_model", {"purge": "yes"})
    assert (status, body["error"]) == (400, "InvalidRequest")
    assert executions(sfn) == []


def test_a_finished_deletes_record_conforms_with_its_removal_result() -> None:
    from trainship.records import DeploymentRecord, answer
    from trainship.state import RemovalResult

    result = RemovalResult(deployment_id="d-del", model_name="test_model",
                           serving_name="test-model", removed=["process: front"],
                           alias_removed="2", message="test_model is out of service")
    record = DeploymentRecord.model_validate({
        "deployment_id": "d-del", "status": "SUCCEEDED", "started_at": None,
        "stopped_at": None, "steps": [], "builds": [], "result": result.model_dump()})
    assert isinstance(record.result, RemovalResult)
    conforms("/deployments/{deployment_id}", "get", 200, answer(record))
