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
