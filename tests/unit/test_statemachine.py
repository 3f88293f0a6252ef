"""The ASL file: valid (statelint), complete, and the same one both stacks load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from trainship.local.daemon import render_definition, substitutions
from trainship.pipeline import ASL_PATH, RESUME_AT

FLOW = ["Route", "PrepareRollback", "ValidateRequest", "TrainModel", "RegisterModel",
        "BuildImage", "DeployModel",
        "WaitForRollout", "CheckRollout", "IsRolloutDone", "SmokeTestModel", "ChooseRollout",
        "ShiftTraffic", "WaitForCanary", "JudgeCanary", "CanaryVerdict", "CanaryVerdictUnknown",
        "PromoteModel",
        "DeploymentSucceeded", "RecordFailure", "DeploymentFailed", "ResumeFailedStep",
        "RemoveModel", "ModelRemoved", "RotateToken", "TokenRotated"]
CAUGHT = ["ValidateRequest", "TrainModel", "RegisterModel", "BuildImage", "DeployModel",
          "CheckRollout", "SmokeTestModel", "ShiftTraffic", "JudgeCanary", "PromoteModel",
          "RemoveModel", "PrepareRollback", "RotateToken"]


def definition() -> dict:
    return json.loads(ASL_PATH.read_text())


def test_statelint_passes() -> None:
    statelint = Path(sys.executable).with_name("statelint")
    proc = subprocess.run([str(statelint), str(ASL_PATH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_state_of_the_flow_is_there() -> None:
    assert set(definition()["States"]) == set(FLOW) | {f"{s}Caught" for s in CAUGHT}
    assert definition()["StartAt"] == "Route"
    route = definition()["States"]["Route"]
    assert route["Type"] == "Choice" and route["Default"] == "ValidateRequest"


def test_every_task_retries_transients_and_catches_to_its_caught_state() -> None:
    states = definition()["States"]
    for name, state in states.items():
        if state["Type"] != "Task":
            continue
        assert state.get("Retry"), name
        for retry in state["Retry"]:
            assert retry["BackoffRate"] >= 1 and retry["MaxAttempts"] <= 3
        if name in ("RecordFailure", "DeploymentFailed"):
            assert "Catch" not in state, name  # the failure path ends here
            continue
        assert name in CAUGHT
        # the Catch keeps the state's input and adds the error beside it
        assert state["Catch"] == [{"ErrorEquals": ["States.ALL"],
                                   "ResultPath": "$.failure", "Next": f"{name}Caught"}]
        assert "States.ALL" not in json.dumps(state["Retry"]), name
        caught = states[f"{name}Caught"]
        assert caught == {"Type": "Pass", "Comment": caught["Comment"],
                          "Parameters": {"name": name,
                                         "redrive_count.$": "$$.Execution.RedriveCount"},
                          "ResultPath": "$.failed_step", "Next": "RecordFailure"}


def test_the_canary_loop_after_the_smoke_test() -> None:
    """SmokeTestModel -> ChooseRollout: $.canary (DeployModel set it) -> ShiftTraffic ->
    WaitForCanary ($.canary.interval_seconds) -> JudgeCanary -> CanaryVerdict: "next" ->
    ShiftTraffic, "promote" -> PromoteModel; no canary: PromoteModel as before."""
    states = definition()["States"]
    assert states["SmokeTestModel"]["Next"] == "ChooseRollout"
    choose = states["ChooseRollout"]
    assert choose["Type"] == "Choice" and choose["Default"] == "PromoteModel"
    assert choose["Choices"] == [{"Variable": "$.canary", "IsPresent": True,
                                  "Next": "ShiftTraffic"}]
    wait = states["WaitForCanary"]
    assert wait["Type"] == "Wait" and wait["SecondsPath"] == "$.canary.interval_seconds"
    assert (states["ShiftTraffic"]["Next"], wait["Next"], states["JudgeCanary"]["Next"]) == (
        "WaitForCanary", "JudgeCanary", "CanaryVerdict")
    verdict = states["CanaryVerdict"]
    # an action that is neither is a fault recorded as JudgeCanary's, never a promotion
    assert verdict["Type"] == "Choice" and verdict["Default"] == "CanaryVerdictUnknown"
    assert verdict["Choices"] == [
        {"Variable": "$.canary.action", "StringEquals": "next", "Next": "ShiftTraffic"},
        {"Variable": "$.canary.action", "StringEquals": "promote", "Next": "PromoteModel"}]
    unknown = states["CanaryVerdictUnknown"]
    assert (unknown["Type"], unknown["ResultPath"], unknown["Next"]) == (
        "Pass", "$.failure", "JudgeCanaryCaught")
    assert set(unknown["Result"]) == {"Error", "Cause"}
    for name in ("ShiftTraffic", "JudgeCanary"):
        # the whole state in and out, like every step's Lambda; retried like SmokeTestModel
        assert states[name]["Parameters"]["Payload.$"] == "$"
        assert states[name]["OutputPath"] == "$.Payload"
        assert states[name]["Retry"] == states["SmokeTestModel"]["Retry"]
        assert RESUME_AT[name] == "DeployModel"


def test_build_results_are_trimmed_before_they_join_the_state() -> None:
    for name in ("TrainModel", "BuildImage"):
        state = definition()["States"][name]
        assert set(state["ResultSelector"]) == {"build_id.$", "exported_variables.$"}
        assert state["ResultPath"].startswith("$.")


def test_the_failure_path_keeps_the_state_and_resumes_where_the_table_says() -> None:
    states = definition()["States"]
    record = states["RecordFailure"]
    assert record["ResultPath"] == "$.recorded" and "OutputPath" not in record
    assert record["Next"] == "DeploymentFailed"
    failed = states["DeploymentFailed"]
    assert failed["Parameters"]["Payload"] == {
        "state.$": "$", "redrive_count.$": "$$.Execution.RedriveCount"}
    # it raises the recorded error: a Retry of that name would raise it again, so only
    # Lambda's own service errors are retried
    retried = {e for rule in failed["Retry"] for e in rule["ErrorEquals"]}
    assert retried and all(e.startswith("Lambda.") for e in retried)
    assert failed["Next"] == "ResumeFailedStep"
    resume = states["ResumeFailedStep"]
    assert resume["Type"] == "Choice" and resume["OutputPath"] == "$.state"
    routes = {rule["StringEquals"]: rule["Next"] for rule in resume["Choices"]}
    assert all(rule["Variable"] == "$.resume_at" for rule in resume["Choices"])
    assert routes == {target: target for target in set(RESUME_AT.values())}
    assert set(RESUME_AT) == set(CAUGHT) - {"ValidateRequest"}


def test_local_substitutions_cover_every_placeholder() -> None:
    rendered = json.loads(render_definition(substitutions()))
    assert "${" not in json.dumps(rendered)
    arns = {s["Parameters"]["FunctionName"] for s in rendered["States"].values()
            if s.get("Resource") == "arn:aws:states:::lambda:invoke"}
    assert len(arns) == 13
