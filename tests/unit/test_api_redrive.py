"""POST /deployments/{id}/redrive through the API function, on moto's Step Functions with
RedriveExecution answered as the local stack answers it (trainship.local.sfn)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambdas.api import handler
from tests.helpers import SAMPLE_FAILURE, SAMPLE_RESULT, LambdaContext, api_gateway_event
from tests.unit.api_harness import conforms, mocked_state_machine, parse_response
from trainship.deployments.store import deployment_status, record_of
from trainship.errors import DeploymentNotRedrivable, TransientError
from trainship.local import sfn as local_sfn
from trainship.redrive import check_redrivable
from trainship.redrive import redrive as redrive_deployment

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

ROUTE = "/deployments/{deployment_id}/redrive"
SCRIPT = "import mlflow\nprint('train')\n"
RESULT, FAILURE = SAMPLE_RESULT, SAMPLE_FAILURE
# The pipeline's ways to fail, in miniature: "broken" is a request ValidateRequest refused
# (caught: ValidateRequestCaught, then DeploymentFailed), "legacy" ends in DeploymentFailed
# with no <State>Caught before it (the state machine before caught failures could be
# resumed), any other model fails uncaught at BuildImage while the build service is down.
# (tests/unit/test_statemachine.py redrives caught failures on the real ASL file.)
MACHINE = {
    "StartAt": "ValidateRequest",
    "States": {
        "ValidateRequest": {"Type": "Choice", "Default": "TrainModel", "Choices": [
            {"Variable": "$.model_name", "StringEquals": "broken",
             "Next": "ValidateRequestCaught"},
            {"Variable": "$.model_name", "StringEquals": "legacy",
             "Next": "DeploymentFailed"}]},
        "ValidateRequestCaught": {"Type": "Pass", "Next": "DeploymentFailed"},
        "TrainModel": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                       "Parameters": {"FunctionName": "train", "Payload.$": "$"},
                       "ResultPath": "$.training", "Next": "BuildImage"},
        "BuildImage": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                       "Parameters": {"FunctionName": "build", "Payload.$": "$"},
                       "ResultPath": "$.image", "Next": "PromoteModel"},
        "PromoteModel": {"Type": "Pass", "Result": RESULT, "Next": "DeploymentSucceeded"},
        "DeploymentSucceeded": {"Type": "Succeed"},
        "DeploymentFailed": {"Type": "Fail", "Error": "NoModelLogged",
                             "Cause": json.dumps(FAILURE)},
    },
}


def call(method: str, path: str, *, resource: str | None = None,
         body: Any = None) -> tuple[int, str, Any]:
    """(status, content type, parsed JSON body) of the API function's answer."""
    parameters = {"deployment_id": path.split("/")[2]} if resource else None
    return parse_response(handler(api_gateway_event(method, path, resource=resource,
                                                    path_parameters=parameters, body=body),
                                  LambdaContext()))


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The build service's state (``down``) and the calls each Task got."""
    state: dict[str, Any] = {"down": True, "calls": [], "built": threading.Event()}

    def route(arn: str, params: dict[str, Any]) -> Any:
        state["calls"].append(params["FunctionName"])
        if params["FunctionName"] == "build" and state["down"]:
            raise local_sfn.TaskFailure("CodeBuild.AWSCodeBuildException", "service unavailable")
        if params["FunctionName"] == "build":
            state["built"].wait(10)  # the build takes until the test lets it finish
        return {"Payload": {}}

    local_sfn.install(route)
    for client in mocked_state_machine(monkeypatch, MACHINE,
                                       {"stepfunctions": {"execute_state_machine": True}}):
        state["client"] = client
        yield state
    local_sfn.uninstall()


def deploy(service: dict[str, Any], model_name: str) -> dict[str, Any]:
    _, _, accepted = call("POST", "/deployments",
                          body={"model_name": model_name, "script": SCRIPT})
    return finished(service, accepted["deployment_id"])


def finished(service: dict[str, Any], deployment_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, _, record = call("GET", f"/deployments/{deployment_id}",
                            resource="/deployments/{deployment_id}")
        if record["status"] != "RUNNING":
            return dict(record)
        time.sleep(0.05)
    raise AssertionError("the deployment did not finish")


def redrive(deployment_id: str) -> tuple[int, Any]:
    status, kind, body = call("POST", f"/deployments/{deployment_id}/redrive", resource=ROUTE)
    assert kind == "application/json"
    conforms(ROUTE, "post", status, body)
    return status, body


def test_a_build_service_failure_is_redriven_from_the_build(service: dict[str, Any]) -> None:
    failed = deploy(service, "iris")
    assert failed["status"] == "FAILED" and failed["current_step"] == "BuildImage"
    doc = failed["error"]
    assert doc["error"] == "CodeBuild.AWSCodeBuildException" and doc["step"] == "BuildImage"
    assert "trainship redrive" in doc["help"]

    service["down"] = False
    status, record = redrive(failed["deployment_id"])
    assert status == 202 and record["status"] == "RUNNING"
    assert record["deployment_id"] == failed["deployment_id"]
    service["built"].set()
    done = finished(service, failed["deployment_id"])
    assert done["status"] == "SUCCEEDED" and done["result"] == RESULT
    assert done["execution_arn"] == failed["execution_arn"]
    assert service["calls"] == ["train", "build", "build"]  # no second training


@pytest.mark.parametrize("model_name,reason", [("iris", "SUCCEEDED"),
                                               ("broken", "at ValidateRequest"),
                                               ("legacy", "earlier definition")])
def test_what_a_redrive_cannot_resume_is_a_409_and_changes_nothing(
        service: dict[str, Any], model_name: str, reason: str) -> None:
    service["down"] = False
    service["built"].set()
    record = deploy(service, model_name)
    calls = list(service["calls"])
    status, document = redrive(record["deployment_id"])
    assert status == 409 and document["error"] == "DeploymentNotRedrivable"
    assert reason in document["message"] and document["help"]
    assert service["calls"] == calls
    arn = record["execution_arn"]
    assert service["client"].describe_execution(executionArn=arn)["redriveCount"] == 0


def test_a_running_deployment_is_refused_before_step_functions_is_asked() -> None:
    with pytest.raises(DeploymentNotRedrivable) as refused:
        check_redrivable({"deployment_id": "d-1", "status": "RUNNING", "steps": [],
                          "builds": [], "current_step": "TrainModel"})
    assert "RUNNING" in refused.value.message and refused.value.http_status == 409


def test_an_unknown_deployment_is_404(service: dict[str, Any]) -> None:
    status, document = redrive("d-nope")
    assert status == 404 and document["error"] == "DeploymentNotFound"


def test_pending_redrive_reads_as_running() -> None:
    """Right after RedriveExecution, AWS may report PENDING_REDRIVE; the record (whose
    status the OpenAPI document lists) says RUNNING."""
    record = record_of({"name": "d-1", "status": "PENDING_REDRIVE",
                        "executionArn": "arn:aws:states:us-east-1:1:execution:m:d-1"}, [])
    assert record["status"] == "RUNNING" and "error" not in record
    assert deployment_status("FAILED") == "FAILED"


def test_step_functions_at_its_execution_limit_is_not_a_refusal() -> None:
    """RedriveExecution's ExecutionLimitExceeded ("the maximum number of running executions
    has been reached") clears once executions end: a TransientError to retry, not the
    409 that says this deployment can never be redriven."""
    client = boto3.client("stepfunctions", region_name="us-east-1")
    arn = "arn:aws:states:us-east-1:123456789012:execution:Trainship:d-1"
    stubber = Stubber(client)
    stubber.add_client_error("redrive_execution", service_error_code="ExecutionLimitExceeded",
                             service_message="Execution limit exceeded", http_status_code=400,
                             expected_params={"executionArn": arn})

    class Store:
        sfn = client
        archive = None

        def get(self, deployment_id: str) -> dict[str, Any]:
            return {"deployment_id": deployment_id, "status": "ABORTED", "steps": [],
                    "builds": [], "current_step": "BuildImage"}

        def execution_arn(self, deployment_id: str) -> str:
            return arn

    with stubber, pytest.raises(TransientError) as busy:
        redrive_deployment(Store(), "d-1")  # type: ignore[arg-type]
    assert busy.value.http_status != 409 and "Execution limit exceeded" in busy.value.details
    stubber.assert_no_pending_responses()
