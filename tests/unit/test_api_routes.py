"""The API function (lambdas/api.py) on API Gateway proxy events, against Step Functions in
moto: every route's answer, success and error document alike, is checked against
docs/openapi.json's schema for it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lambdas.api import handler
from tests.helpers import REPO, SAMPLE_FAILURE, SAMPLE_RESULT, LambdaContext, api_gateway_event
from tests.unit.api_harness import (
    DOCUMENT,
    MACHINE,
    conforms,
    mocked_state_machine,
    parse_response,
)

# The function publishes no metric of its own on these routes.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

SCRIPT = "import mlflow\nprint('train')\n"
RESULT, FAILURE = SAMPLE_RESULT, SAMPLE_FAILURE
def _aws(monkeypatch: pytest.MonkeyPatch, config: Any) -> Iterator[Any]:
    yield from mocked_state_machine(monkeypatch, MACHINE, config)


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Step Functions whose executions stay RUNNING."""
    yield from _aws(monkeypatch, {})


@pytest.fixture
def running_sfn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Step Functions that runs MACHINE (moto's ASL interpreter)."""
    yield from _aws(monkeypatch, {"stepfunctions": {"execute_state_machine": True}})


def call(method: str, path: str, *, resource: str | None = None, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    """(status, content type, body: parsed when JSON) of the API function's answer."""
    parameters = None
    if resource and "{deployment_id}" in resource:
        parameters = {"deployment_id": path.split("/")[2]}
    return parse_response(handler(api_gateway_event(method, path, resource=resource,
                                                    path_parameters=parameters, body=body,
                                                    headers=headers), LambdaContext()))


@pytest.mark.parametrize("body", [
    {"deployment_id": "d-1"},
    {"deployment_id": "d-1", "status": "SUCCEEDED", "execution_arn": "a", "status_url": "u"},
])
def test_conforms_refuses_what_the_document_does_not_allow(body: dict[str, Any]) -> None:
    from jsonschema import ValidationError

    with pytest.raises(ValidationError):
        conforms("/deployments", "post", 202, body)


def wait(sfn: Any, arn: str) -> None:
    for _ in range(200):
        if sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
            return
        time.sleep(0.05)
    raise AssertionError(f"{arn} still running")


# --- POST ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path,body", [
    ("/deployments", {"model_name": "iris", "script": SCRIPT, "requirements": ["pandas>=2"]}),
    ("/mlops/deploy", {"model_name": "test_model", "timeout": 600, "replicas": 2,
                       "script_content": base64.b64encode(SCRIPT.encode()).decode()}),
])
def test_post_starts_the_execution_with_the_body(sfn: Any, path: str,
                                                 body: dict[str, Any]) -> None:
    status, kind, accepted = call("POST", path, body=body)
    assert (status, kind) == (202, "application/json")
    conforms(path, "post", status, accepted)
    assert accepted["status_url"] == f"/deployments/{accepted['deployment_id']}"
    execution = sfn.describe_execution(executionArn=accepted["execution_arn"])
    assert execution["name"] == accepted["deployment_id"]
    assert json.loads(execution["input"]) == body


@pytest.mark.parametrize("body,error,details", [
    ("{not json", "InvalidRequest", "Expecting property name"),
    ([{"model_name": "iris"}], "InvalidRequest", "got list"),
    ({"model_name": "my model", "script": SCRIPT}, "InvalidRequest", "model_name"),
    ({"model_name": "iris"}, "InvalidRequest", "fields given: none"),
    ({"model_name": "iris", "script": SCRIPT, "colour": "red"}, "InvalidRequest",
     "colour: unknown field"),
    ({"model_name": "iris", "script": SCRIPT, "requirements": ["--index-url=x"]},
     "InvalidRequest", "pip options"),
    ({"model_name": "iris", "script": "x" * (301 * 1024)}, "InvalidRequest", "bytes"),
    ({"model_name": "iris", "script": SCRIPT, "target": "kubernetes"}, "TargetNotEnabled",
     "enabled targets: process"),
])
def test_a_bad_body_is_a_400_error_document_and_starts_nothing(
        sfn: Any, body: Any, error: str, details: str) -> None:
    status, kind, document = call("POST", "/deployments", body=body)
    assert (status, kind) == (400, "application/json")
    conforms("/deployments", "post", status, document)
    assert document["error"] == error and details in document["details"]
    assert document["help"]
    machine = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    assert sfn.list_executions(stateMachineArn=machine)["executions"] == []


def test_the_same_idempotency_key_and_body_give_the_same_deployment(sfn: Any) -> None:
    body = {"model_name": "iris", "script": SCRIPT}
    first = call("POST", "/deployments", body=body, headers={"Idempotency-Key": "k-1"})
    again = call("POST", "/deployments", body=body, headers={"Idempotency-Key": "k-1"})
    assert first[0] == again[0] == 202
    assert first[2]["deployment_id"] == again[2]["deployment_id"]
    status, _, conflict = call("POST", "/deployments", body={**body, "replicas": 2},
                               headers={"Idempotency-Key": "k-1"})
    assert status == 409 and conflict["error"] == "IdempotencyConflict"
    conforms("/deployments", "post", status, conflict)
    status, _, mismatch = call("POST", "/deployments", body={**body, "idempotency_key": "k-2"},
                               headers={"Idempotency-Key": "k-1"})
    assert status == 400 and mismatch["error"] == "InvalidRequest"


def test_a_finished_deployment_answers_a_resubmission_with_itself(running_sfn: Any) -> None:
    body = {"model_name": "iris", "script": SCRIPT, "idempotency_key": "k-done"}
    _, _, first = call("POST", "/deployments", body=body)
    wait(running_sfn, first["execution_arn"])
    status, _, again = call("POST", "/deployments", body=body)
    assert status == 202 and again["deployment_id"] == first["deployment_id"]


# --- GET ----------------------------------------------------------------------------------

def test_list_is_newest_first(sfn: Any) -> None:
    ids = [call("POST", "/deployments", body={"model_name": f"m{i}", "script": SCRIPT})[2][
        "deployment_id"] for i in range(3)]
    status, _, listing = call("GET", "/deployments")
    assert status == 200
    conforms("/deployments", "get", status, listing)
    assert [item["deployment_id"] for item in listing["deployments"]] == ids[::-1]
    assert {item["status"] for item in listing["deployments"]} == {"RUNNING"}


def test_a_succeeded_deployment_has_its_result_and_steps(running_sfn: Any) -> None:
    _, _, accepted = call("POST", "/deployments", body={"model_name": "iris", "script": SCRIPT})
    wait(running_sfn, accepted["execution_arn"])
    path = accepted["status_url"]
    status, _, record = call("GET", path, resource="/deployments/{deployment_id}")
    assert status == 200
    conforms("/deployments/{deployment_id}", "get", status, record)
    assert record["status"] == "SUCCEEDED" and record["result"] == RESULT
    assert "error" not in record
    assert [s["name"] for s in record["steps"]][:2] == ["ValidateRequest", "PromoteModel"]
    assert {s["status"] for s in record["steps"]} == {"SUCCEEDED"}


def test_a_failed_deployment_has_its_error_document_and_logs(running_sfn: Any) -> None:
    _, _, accepted = call("POST", "/deployments",
                          body={"model_name": "broken", "script": SCRIPT})
    wait(running_sfn, accepted["execution_arn"])
    path = accepted["status_url"]
    status, _, record = call("GET", path, resource="/deployments/{deployment_id}")
    assert status == 200
    conforms("/deployments/{deployment_id}", "get", status, record)
    assert record["status"] == "FAILED" and record["error"] == FAILURE
    assert "result" not in record
    status, kind, logs = call("GET", f"{path}/logs", resource="/deployments/{deployment_id}/logs")
    assert (status, kind) == (200, "text/plain; charset=utf-8")
    assert "===== error =====" in logs and FAILURE["message"] in logs


@pytest.mark.parametrize("suffix,resource", [
    ("", "/deployments/{deployment_id}"), ("/logs", "/deployments/{deployment_id}/logs")])
def test_an_unknown_deployment_is_404(sfn: Any, suffix: str, resource: str) -> None:
    status, kind, document = call("GET", f"/deployments/d-nope{suffix}", resource=resource)
    assert (status, kind) == (404, "application/json")
    conforms(resource, "get", status, document)
    assert document["error"] == "DeploymentNotFound" and "d-nope" in document["message"]


def test_an_unknown_route_names_the_documented_ones(sfn: Any) -> None:
    status, _, document = call("DELETE", "/deployments")
    assert status == 404 and document["error"] == "NotFound"
    for path, item in DOCUMENT["paths"].items():
        for method in item:
            assert f"{method.upper()} {path}" in document["help"]


def test_the_api_serves_its_openapi_document(sfn: Any) -> None:
    status, kind, served = call("GET", "/openapi.json")
    assert (status, kind) == (200, "application/json")
    assert served == json.loads((REPO / "docs" / "openapi.json").read_text())
