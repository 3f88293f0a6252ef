"""Contract tests of RedriveExecution on the local Step Functions (trainship.local.sfn_redrive)
against the pinned moto: AWS's semantics (same ARN, history goes on, the unsuccessful
state reruns with its input, succeeded states do not) and its error names."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from trainship.local import sfn, sfn_redrive


@pytest.fixture
def stepfunctions() -> Iterator[Any]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.client("stepfunctions", region_name="us-east-1")
    sfn.uninstall()


def task(name: str, **extra: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": name, "Payload.$": "$"},
            "OutputPath": "$.Payload", **extra}


PIPELINE = {"StartAt": "First", "States": {
    "First": task("first", Next="Second"),
    "Second": task("second", Next="Third"),
    "Third": task("third", End=True)}}


def wait(client: Any, arn: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        described: dict[str, Any] = client.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError("execution did not finish")


def start(client: Any, definition: dict[str, Any], payload: dict[str, Any]) -> str:
    machine = client.create_state_machine(
        name=f"t{time.monotonic_ns()}", definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/test")["stateMachineArn"]
    arn: str = client.start_execution(stateMachineArn=machine, name="d-1",
                                      input=json.dumps(payload))["executionArn"]
    return arn


def entered(client: Any, arn: str) -> list[str]:
    events = client.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] if "stateEnteredEventDetails" in e
            else e["type"] for e in events
            if "stateEnteredEventDetails" in e or e["type"].startswith("Execution")]


@pytest.fixture
def flaky_second() -> dict[str, Any]:
    """A route whose Second state fails until ``ok`` is set; it records each call."""
    control: dict[str, Any] = {"ok": False, "calls": []}

    def route(arn: str, params: dict[str, Any]) -> Any:
        name = params["FunctionName"]
        control["calls"].append((name, params["Payload"]))
        if name == "second" and not control["ok"]:
            raise sfn.TaskFailure("CodeBuild.AWSCodeBuildException", "service unavailable")
        return {"Payload": {**params["Payload"], name: True}}

    sfn.install(route)
    return control


def test_redrive_reruns_the_failed_state_with_its_input_not_the_ones_before(
        stepfunctions: Any, flaky_second: dict[str, Any]) -> None:
    arn = start(stepfunctions, PIPELINE, {"x": 1})
    failed = wait(stepfunctions, arn)
    assert failed["status"] == "FAILED"
    assert failed["redriveCount"] == 0 and failed["redriveStatus"] == "REDRIVABLE"
    assert "redriveDate" not in failed

    flaky_second["ok"] = True
    answer = stepfunctions.redrive_execution(executionArn=arn)
    assert isinstance(answer["redriveDate"], datetime)
    done = wait(stepfunctions, arn)
    assert done["status"] == "SUCCEEDED", done
    assert json.loads(done["output"]) == {"x": 1, "first": True, "second": True, "third": True}
    assert done["executionArn"] == arn and done["redriveCount"] == 1
    assert done["redriveStatus"] == "NOT_REDRIVABLE"
    assert done["redriveStatusReason"] == "Execution is SUCCEEDED and cannot be redriven."
    assert [name for name, _ in flaky_second["calls"]] == ["first", "second", "second", "third"]
    # the rerun got the same input as the failed attempt
    assert flaky_second["calls"][1][1] == flaky_second["calls"][2][1] == {"x": 1, "first": True}
    assert entered(stepfunctions, arn) == [
        "ExecutionStarted", "First", "Second", "ExecutionFailed",
        "ExecutionRedriven", "Second", "Third", "ExecutionSucceeded"]
    events = stepfunctions.get_execution_history(executionArn=arn)["events"]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    redriven = next(e for e in events if e["type"] == "ExecutionRedriven")
    assert redriven["executionRedrivenEventDetails"] == {"redriveCount": 1}


def test_a_caught_failure_redrives_the_state_the_execution_ended_in(
        stepfunctions: Any, flaky_second: dict[str, Any]) -> None:
    """As on AWS: the caught state counts as handled; the Fail state is what reruns."""
    definition = {"StartAt": "First", "States": {
        "First": task("first", Next="Second"),
        "Second": task("second", End=True, Catch=[
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Failed"}]),
        "Failed": {"Type": "Fail", "Error": "Recorded", "Cause": "caught"}}}
    arn = start(stepfunctions, definition, {})
    assert wait(stepfunctions, arn)["status"] == "FAILED"
    flaky_second["ok"] = True
    stepfunctions.redrive_execution(executionArn=arn)
    again = wait(stepfunctions, arn)
    assert again["status"] == "FAILED" and again["error"] == "Recorded"
    assert again["redriveCount"] == 1
    assert entered(stepfunctions, arn)[-3:] == ["ExecutionRedriven", "Failed", "ExecutionFailed"]


def test_succeeded_and_unknown_executions_are_refused_with_aws_error_names(
        stepfunctions: Any) -> None:
    sfn.install(lambda arn, params: {"Payload": {}})
    arn = start(stepfunctions, PIPELINE, {})
    assert wait(stepfunctions, arn)["status"] == "SUCCEEDED"
    with pytest.raises(ClientError) as refused:
        stepfunctions.redrive_execution(executionArn=arn)
    assert refused.value.response["Error"]["Code"] == "ExecutionNotRedrivable"
    assert "SUCCEEDED" in refused.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as unknown:
        stepfunctions.redrive_execution(executionArn=arn.replace(":d-1", ":nope"))
    assert unknown.value.response["Error"]["Code"] == "ExecutionDoesNotExist"


def test_client_token_answers_again_without_a_second_redrive(
        stepfunctions: Any, flaky_second: dict[str, Any]) -> None:
    arn = start(stepfunctions, PIPELINE, {})
    wait(stepfunctions, arn)
    first = stepfunctions.redrive_execution(executionArn=arn, clientToken="t-1")
    assert wait(stepfunctions, arn)["status"] == "FAILED"  # still failing
    same = stepfunctions.redrive_execution(executionArn=arn, clientToken="t-1")
    assert same["redriveDate"] == first["redriveDate"]
    assert stepfunctions.describe_execution(executionArn=arn)["redriveCount"] == 1
    stepfunctions.redrive_execution(executionArn=arn, clientToken="t-2")
    assert wait(stepfunctions, arn)["redriveCount"] == 2


def test_redrivable_period_and_status_reasons(stepfunctions: Any,
                                              flaky_second: dict[str, Any]) -> None:
    arn = start(stepfunctions, PIPELINE, {})
    wait(stepfunctions, arn)
    backend_execution = sfn_redrive.find_execution(arn)
    later = backend_execution.stop_date + timedelta(days=15)
    assert sfn_redrive.not_redrivable_reason(backend_execution, later) == (
        "Execution redrivable period exceeded.")
    assert sfn_redrive.not_redrivable_reason(
        backend_execution, backend_execution.stop_date + timedelta(days=13)) is None
    backend_execution.stop_date = datetime.now(UTC) - timedelta(days=15)
    with pytest.raises(ClientError) as refused:
        stepfunctions.redrive_execution(executionArn=arn)
    assert refused.value.response["Error"]["Code"] == "ExecutionNotRedrivable"
    described = stepfunctions.describe_execution(executionArn=arn)
    assert described["redriveStatus"] == "NOT_REDRIVABLE"
    assert described["redriveStatusReason"] == "Execution redrivable period exceeded."


def test_unsuccessful_state_is_the_last_entered_and_not_exited() -> None:
    def ev(kind: str, name: str = "", data: Any = None) -> dict[str, Any]:
        event: dict[str, Any] = {"type": kind}
        if kind.endswith("StateEntered"):
            event["stateEnteredEventDetails"] = {"name": name, "input": json.dumps(data)}
        return event

    assert sfn_redrive.unsuccessful_state([
        ev("ExecutionStarted"), ev("TaskStateEntered", "A", {"a": 1}), ev("TaskStateExited"),
        ev("WaitStateEntered", "W", {"w": 2}), ev("ExecutionAborted")]) == ("W", {"w": 2})
    assert sfn_redrive.unsuccessful_state([
        ev("TaskStateEntered", "A", {}), ev("TaskStateExited"), ev("ExecutionSucceeded")]) is None
