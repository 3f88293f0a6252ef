"""The ASL file: valid (statelint), complete, and the same one both stacks load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from trainship.local.daemon import render_definition, substitutions
from trainship.pipeline import ASL_PATH

FLOW = ["Route", "PrepareRollback", "ValidateRequest", "TrainModel", "RegisterModel",
        "BuildImage", "DeployModel",
        "WaitForRollout", "CheckRollout", "IsRolloutDone", "SmokeTestModel", "PromoteModel",
        "DeploymentSucceeded", "RecordFailure", "DeploymentFailed"]


def definition() -> dict:
    return json.loads(ASL_PATH.read_text())


def test_statelint_passes() -> None:
    statelint = Path(sys.executable).with_name("statelint")
    proc = subprocess.run([str(statelint), str(ASL_PATH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_state_of_the_flow_is_there() -> None:
    assert set(definition()["States"]) == set(FLOW)
    assert definition()["StartAt"] == "Route"


def test_every_task_retries_transients_and_catches_to_record_failure() -> None:
    for name, state in definition()["States"].items():
        if state["Type"] != "Task":
            continue
        assert state.get("Retry"), name
        for retry in state["Retry"]:
            assert retry["BackoffRate"] >= 1 and retry["MaxAttempts"] <= 3
        if name != "RecordFailure":
            assert state["Catch"] == [{"ErrorEquals": ["States.ALL"],
                                       "ResultPath": "$.failure", "Next": "RecordFailure"}]
            assert "States.ALL" not in json.dumps(state["Retry"]), name


def test_build_results_are_trimmed_before_they_join_the_state() -> None:
    for name in ("TrainModel", "BuildImage"):
        state = definition()["States"][name]
        assert set(state["ResultSelector"]) == {"build_id.$", "exported_variables.$"}
        assert state["ResultPath"].startswith("$.")


def test_fail_state_carries_the_error_document() -> None:
    fail = definition()["States"]["DeploymentFailed"]
    assert fail == {"Type": "Fail", "Comment": fail["Comment"], "ErrorPath": "$.error",
                    "CausePath": "$.cause"}


def test_local_substitutions_cover_every_placeholder() -> None:
    rendered = json.loads(render_definition(substitutions()))
    assert "${" not in json.dumps(rendered)
    arns = {s["Parameters"]["FunctionName"] for s in rendered["States"].values()
            if s.get("Resource") == "arn:aws:states:::lambda:invoke"}
    assert len(arns) == 8


# --- the Route state and the rollback path, on moto's ASL interpreter ----------------------

def run_real_definition(execution_input: dict, fail_at: str = "") -> tuple[dict, list[str]]:
    """The ASL file as the local stack renders it, executed by moto, each Lambda state
    answered by a stand-in that passes the state on (``fail_at`` raises RolloutFailed)."""
    import time

    import boto3
    from moto import mock_aws

    from trainship.local import sfn
    from trainship.local.lambda_runtime import local_function_arn

    by_arn = {local_function_arn(step): step for step in (
        "ValidateRequest", "PrepareRollback", "DeployModel", "CheckRollout", "SmokeTestModel",
        "PromoteModel", "RecordFailure")}

    def route(resource: str, params: dict) -> dict:
        step = by_arn.get(params.get("FunctionName", ""), resource)
        payload = dict(params.get("Payload") or {})
        if step == fail_at:
            raise sfn.TaskFailure("RolloutFailed", json.dumps({
                "errorType": "RolloutFailed", "errorMessage": "no"}))
        if step == "PrepareRollback":
            return {"Payload": {**payload["request"], "rollback": {"replaced_version": "2"}}}
        if step == "DeployModel":
            return {"Payload": {**payload, "rollout": {"ready": False, "poll_seconds": 0}}}
        if step == "CheckRollout":
            return {"Payload": {**payload, "rollout": {"ready": True, "poll_seconds": 0}}}
        if step == "PromoteModel":
            return {"Payload": {"result": {"status": "SUCCEEDED", "version": payload["version"]}}}
        if step == "RecordFailure":
            return {"Payload": {"error": "RolloutFailed", "cause": "{}"}}
        return {"Payload": payload}

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        client = boto3.client("stepfunctions", region_name="us-east-1")
        sfn.install(route)
        try:
            arn = client.create_state_machine(
                name=f"t{time.monotonic_ns()}", definition=render_definition(substitutions()),
                roleArn="arn:aws:iam::123456789012:role/test")["stateMachineArn"]
            started = client.start_execution(stateMachineArn=arn, name="d-route",
                                             input=json.dumps(execution_input))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                described = client.describe_execution(executionArn=started["executionArn"])
                if described["status"] != "RUNNING":
                    break
                time.sleep(0.05)
            events = client.get_execution_history(
                executionArn=started["executionArn"])["events"]
        finally:
            sfn.uninstall()
    entered = [e["stateEnteredEventDetails"]["name"] for e in events
               if "stateEnteredEventDetails" in e]
    return described, entered


def test_a_rollback_skips_training_and_the_build() -> None:
    described, entered = run_real_definition(
        {"action": "rollback", "model_name": "test_model", "version": "1"})
    assert described["status"] == "SUCCEEDED", described
    assert entered == ["Route", "PrepareRollback", "DeployModel", "WaitForRollout",
                       "CheckRollout", "IsRolloutDone", "SmokeTestModel", "PromoteModel",
                       "DeploymentSucceeded"]
    assert json.loads(described["output"])["version"] == "1"


def test_a_failed_rollback_is_recorded_and_undone_like_a_deployment() -> None:
    described, entered = run_real_definition(
        {"action": "rollback", "model_name": "test_model", "version": "1"},
        fail_at="SmokeTestModel")
    assert described["status"] == "FAILED"
    assert entered[-3:] == ["SmokeTestModel", "RecordFailure", "DeploymentFailed"]


def test_no_action_is_a_deployment() -> None:
    described, entered = run_real_definition({"model_name": "m", "script": "x"},
                                             fail_at="ValidateRequest")
    assert entered[:2] == ["Route", "ValidateRequest"]
    assert "PrepareRollback" not in entered and described["status"] == "FAILED"
    _, entered = run_real_definition({"action": "something", "model_name": "m"},
                                     fail_at="ValidateRequest")
    assert entered[:2] == ["Route", "ValidateRequest"]  # ValidateRequest refuses it
