"""Contract tests of trainship.local.sfn against the pinned moto.

If a moto upgrade changes how Task states are built, retried, caught or recorded, these
fail before anything else does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from trainship.local import sfn


@pytest.fixture
def stepfunctions() -> Iterator[Any]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.client("stepfunctions", region_name="us-east-1")
    sfn.uninstall()


def run(client: Any, definition: dict[str, Any], payload: dict[str, Any] | None = None,
        name: str = "d-test") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    arn = client.create_state_machine(
        name=f"t{time.monotonic_ns()}", definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/test")["stateMachineArn"]
    execution = client.start_execution(stateMachineArn=arn, name=name,
                                       input=json.dumps(payload or {}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        described = client.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING":
            history = client.get_execution_history(executionArn=execution["executionArn"])
            return described, history["events"]
        time.sleep(0.05)
    raise AssertionError("execution did not finish")


def lambda_task(name: str, **extra: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": name, "Payload.$": "$"},
            "OutputPath": "$.Payload", **extra}


def test_task_result_flows_and_history_names_states(stepfunctions: Any) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def route(arn: str, params: dict[str, Any]) -> Any:
        seen.append((arn, params))
        return {"Payload": {**params["Payload"], "added": params["FunctionName"]}}

    sfn.install(route)
    described, events = run(stepfunctions, {"StartAt": "First", "States": {
        "First": lambda_task("one", Next="Second"), "Second": lambda_task("two", End=True)}},
        {"x": 1})
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"x": 1, "added": "two"}
    assert [a for a, _ in seen] == ["arn:aws:states:::lambda:invoke"] * 2
    entered = [e["stateEnteredEventDetails"]["name"] for e in events
               if "stateEnteredEventDetails" in e]
    assert entered == ["First", "Second"]
    assert sum(e["type"] == "TaskSucceeded" for e in events) == 2


def test_retry_matches_error_name_then_succeeds(stepfunctions: Any) -> None:
    attempts = []

    def route(arn: str, params: dict[str, Any]) -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            raise sfn.TaskFailure("Lambda.TooManyRequestsException", "slow down")
        return {"Payload": {"ok": True}}

    sfn.install(route)
    described, events = run(stepfunctions, {"StartAt": "T", "States": {"T": lambda_task(
        "f", End=True, Retry=[{"ErrorEquals": ["Lambda.TooManyRequestsException"],
                               "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 1.0}])}})
    assert described["status"] == "SUCCEEDED"
    assert len(attempts) == 3
    assert sum(e["type"] == "TaskFailed" for e in events) == 2


def test_retry_does_not_match_other_errors(stepfunctions: Any) -> None:
    attempts = []

    def route(arn: str, params: dict[str, Any]) -> Any:
        attempts.append(1)
        raise sfn.TaskFailure("NoModelLogged", "{}")

    sfn.install(route)
    described, _ = run(stepfunctions, {"StartAt": "T", "States": {"T": lambda_task(
        "f", End=True, Retry=[{"ErrorEquals": ["TransientError"], "IntervalSeconds": 1,
                               "MaxAttempts": 3}])}})
    assert described["status"] == "FAILED"
    assert described["error"] == "NoModelLogged"
    assert len(attempts) == 1


def test_catch_passes_error_and_cause_and_fail_uses_paths(stepfunctions: Any) -> None:
    def route(arn: str, params: dict[str, Any]) -> Any:
        if params["FunctionName"] == "bad":
            raise sfn.TaskFailure("ScriptFailed", json.dumps({"errorMessage": "boom"}))
        return {"Payload": {"error": "ScriptFailed", "cause": params["Payload"]["failure"]}}

    sfn.install(route)
    described, events = run(stepfunctions, {"StartAt": "T", "States": {
        "T": lambda_task("bad", End=True, Catch=[{"ErrorEquals": ["States.ALL"],
                                                  "ResultPath": "$.failure", "Next": "R"}]),
        "R": lambda_task("record", Next="F"),
        "F": {"Type": "Fail", "ErrorPath": "$.error", "CausePath": "$.cause.Cause"}}},
        {"keep": "me"})
    assert described["status"] == "FAILED"
    assert described["error"] == "ScriptFailed"
    assert json.loads(described["cause"]) == {"errorMessage": "boom"}
    failed = [e for e in events if e["type"] == "TaskFailed"]
    assert failed[0]["taskFailedEventDetails"]["error"] == "ScriptFailed"


def test_states_task_failed_is_a_states_error(stepfunctions: Any) -> None:
    def route(arn: str, params: dict[str, Any]) -> Any:
        raise sfn.TaskFailure("States.TaskFailed", json.dumps({"Build": {"Id": "p:1"}}))

    sfn.install(route)
    described, _ = run(stepfunctions, {"StartAt": "B", "States": {"B": {
        "Type": "Task", "Resource": "arn:aws:states:::codebuild:startBuild.sync",
        "Parameters": {"ProjectName": "p"}, "End": True,
        "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"}]},
        "Caught": {"Type": "Pass", "End": True}}})
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["Error"] == "States.TaskFailed"


def test_context_timestamps_arrive_as_iso_strings(stepfunctions: Any) -> None:
    got: dict[str, Any] = {}

    def route(arn: str, params: dict[str, Any]) -> Any:
        got.update(params["Payload"])
        return {"Payload": {}}

    sfn.install(route)
    run(stepfunctions, {"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True,
        "Parameters": {"FunctionName": "f", "Payload": {"t.$": "$$.Execution.StartTime",
                                                        "n.$": "$$.Execution.Name"}}}}})
    assert isinstance(got["t"], str) and got["t"].endswith("Z")
    assert got["n"] == "d-test"


def test_same_name_and_input_is_one_execution_while_running(stepfunctions: Any) -> None:
    """AWS semantics: idempotent while running; closed or different input -> AlreadyExists."""
    sfn.install(lambda arn, params: {"Payload": {}})
    arn = stepfunctions.create_state_machine(
        name="idem", definition=json.dumps({"StartAt": "W", "States": {
            "W": {"Type": "Wait", "Seconds": 2, "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/test")["stateMachineArn"]
    first = stepfunctions.start_execution(stateMachineArn=arn, name="d-1", input='{"a": 1}')
    again = stepfunctions.start_execution(stateMachineArn=arn, name="d-1", input='{"a": 1}')
    assert first["executionArn"] == again["executionArn"]
    with pytest.raises(stepfunctions.exceptions.ExecutionAlreadyExists):
        stepfunctions.start_execution(stateMachineArn=arn, name="d-1", input='{"a": 2}')
    deadline = time.monotonic() + 30  # until the execution closes (the Wait's 2 s)
    while stepfunctions.describe_execution(executionArn=first["executionArn"])[
            "status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(stepfunctions.exceptions.ExecutionAlreadyExists):
        stepfunctions.start_execution(stateMachineArn=arn, name="d-1", input='{"a": 1}')
