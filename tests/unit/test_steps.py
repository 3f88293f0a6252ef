from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import FakeDriver, handle, state
from trainship import steps
from trainship.cluster import RolloutStatus
from trainship.deployments import summarize_history
from trainship.errors import RolloutFailed
from trainship.state import RolloutState


def test_lambda_failure_becomes_its_document(tmp_path: Path) -> None:
    doc = {"error": "NoModelLogged", "message": "no model", "details": "",
           "help": "log one", "step": "RegisterModel"}
    ctx = steps.FailureContext.model_validate({"failure": {
        "Error": "NoModelLogged",
        "Cause": json.dumps({"errorMessage": json.dumps(doc), "errorType": "NoModelLogged"})}})
    out = steps.record_failure(ctx, cluster=lambda: FakeDriver([]))
    assert out["error"] == "NoModelLogged"
    assert json.loads(out["cause"]) == doc


def test_build_failure_uses_the_staged_document(tmp_path: Path) -> None:
    (tmp_path / "d-1").mkdir()
    (tmp_path / "d-1" / "error.json").write_text(json.dumps({
        "error": "ScriptTimeout", "message": "slow", "details": "tail", "help": "h",
        "step": "TrainModel"}))
    ctx = steps.FailureContext.model_validate({
        "script_uri": str(tmp_path / "d-1" / "train.py"),
        "failure": {"Error": "States.TaskFailed",
                    "Cause": json.dumps({"Build": {"Id": "trainship-train:1",
                                                   "ProjectName": "trainship-train",
                                                   "BuildStatus": "FAILED"}})}})
    assert steps.record_failure(ctx, cluster=lambda: FakeDriver([]))["error"] == \
        "ScriptTimeout"


def test_build_failure_without_document_is_a_build_error(tmp_path: Path) -> None:
    ctx = steps.FailureContext.model_validate({
        "script_uri": str(tmp_path / "none" / "train.py"),
        "failure": {"Error": "States.TaskFailed", "Cause": json.dumps({"Build": {
            "Id": "trainship-image:1", "ProjectName": "trainship-image",
            "BuildStatus": "FAILED", "Environment": {"EnvironmentVariables": [
                {"Name": "TRAINSHIP_STEP", "Value": "BuildImage"}]}}})}})
    doc = steps.failure_document(ctx)
    assert doc.error == "ImageBuildFailed" and doc.step == "BuildImage"


def test_service_errors_keep_their_aws_name() -> None:
    ctx = steps.FailureContext.model_validate({"failure": {
        "Error": "Lambda.ServiceException", "Cause": "Rate exceeded (Service: AWSLambda)"}})
    doc = steps.failure_document(ctx)
    assert doc.error == "Lambda.ServiceException" and "Rate exceeded" in doc.message
    assert doc.help == steps.SERVICE_ERROR_HELP


def test_a_document_without_a_step_is_named_after_the_caught_state() -> None:
    """<State>Caught records the failed state ($.failed_step): a service error, which
    names no step itself, gets it (a redrive resumes there); a step a Lambda named stays."""
    failure = {"Error": "CodeBuild.AWSCodeBuildException", "Cause": "service unavailable"}
    recorded = steps.record_failure(steps.FailureContext.model_validate(
        {"failure": failure, "failed_step": {"name": "BuildImage", "redrive_count": 0}}),
        cluster=lambda: pytest.fail("no rollout to undo"))
    doc = json.loads(recorded["cause"])
    assert recorded["error"] == doc["error"] == "CodeBuild.AWSCodeBuildException"
    assert doc["step"] == "BuildImage" and "trainship redrive" in doc["help"]
    named = steps.FailureContext.model_validate({
        "failure": {"Error": "RolloutFailed", "Cause": json.dumps({"errorMessage": str(
            RolloutFailed("not ready", step="SmokeTestModel"))})},
        "failed_step": {"name": "CheckRollout"}})
    assert steps.record_failure(named, cluster=lambda: pytest.fail("no rollout"))[
        "error"] == "RolloutFailed"
    assert json.loads(steps.record_failure(named, cluster=lambda: pytest.fail("x"))[
        "cause"])["step"] == "SmokeTestModel"


def test_failed_rollout_is_discarded(tmp_path: Path) -> None:
    driver = FakeDriver([])
    ctx = steps.FailureContext.model_validate({
        "rollout": {"handle": handle(pid=1)}, "failure": {"Error": "X", "Cause": "y"}})
    steps.record_failure(ctx, cluster=lambda: driver)
    assert driver.discarded == [handle(pid=1)]


def test_check_rollout_loops_then_fails_at_deadline(tmp_path: Path) -> None:
    s = state(tmp_path, rollout=RolloutState(deadline=100.0, handle=handle(x=1)).model_dump())
    driver = FakeDriver([RolloutStatus(False, "starting"), RolloutStatus(False, "starting")])
    assert steps.check_rollout(s, driver=driver, now=50).rollout.ready is False  # type: ignore
    try:
        steps.check_rollout(s, driver=driver, now=150)
    except RolloutFailed as exc:
        assert "deadline" in exc.message
    else:
        raise AssertionError("expected RolloutFailed")


def test_check_rollout_watches_for_the_local_stacks_seconds(tmp_path: Path) -> None:
    """With watch_seconds (the local stack: WaitForRollout waits 0 s) CheckRollout looks
    again every WATCH_INTERVAL_SECONDS until the version is ready or the time is up;
    without (AWS) it looks once."""
    s = state(tmp_path, rollout=RolloutState(deadline=1e12, handle=handle(x=1)).model_dump())
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    starting, ready = RolloutStatus(False, "starting"), RolloutStatus(True, "ready")
    driver = FakeDriver([starting, starting, ready])
    out = steps.check_rollout(s, driver=driver, watch_seconds=1.0, sleep=sleep,
                              clock=lambda: clock[0])
    assert out.rollout.ready is True  # type: ignore[union-attr]
    assert clock[0] == pytest.approx(2 * steps.WATCH_INTERVAL_SECONDS)
    assert driver.statuses == []

    clock[0] = 0.0
    driver = FakeDriver([starting] * 100)
    out = steps.check_rollout(s, driver=driver, watch_seconds=1.0, sleep=sleep,
                              clock=lambda: clock[0])
    assert out.rollout.ready is False  # type: ignore[union-attr]
    assert clock[0] == pytest.approx(1.0, abs=steps.WATCH_INTERVAL_SECONDS)

    driver = FakeDriver([starting, ready])
    assert steps.check_rollout(s, driver=driver).rollout.ready is False  # type: ignore
    assert driver.statuses == [ready]  # one look


def test_crashed_server_is_rollout_failed_with_log(tmp_path: Path) -> None:
    s = state(tmp_path, rollout=RolloutState(deadline=1e12, handle=handle()).model_dump())
    driver = FakeDriver([RolloutStatus(False, "exited", failed=True, details="Traceback x")])
    try:
        steps.check_rollout(s, driver=driver)
    except RolloutFailed as exc:
        assert exc.details == "Traceback x" and exc.step == "CheckRollout"
    else:
        raise AssertionError("expected RolloutFailed")


def test_history_summary_marks_failed_step() -> None:
    t = "2026-01-01T00:00:0{}+00:00"
    events = [
        {"type": "TaskStateEntered", "timestamp": t.format(0),
         "stateEnteredEventDetails": {"name": "TrainModel"}},
        {"type": "TaskFailed", "timestamp": t.format(3), "taskFailedEventDetails": {
            "resourceType": "codebuild", "cause": json.dumps({"Build": {
                "Id": "p:1", "BuildStatus": "FAILED", "Logs": {"DeepLink": "file:///x"}}})}},
        {"type": "TaskStateExited", "timestamp": t.format(4),
         "stateExitedEventDetails": {"name": "TrainModel"}},
        {"type": "TaskStateEntered", "timestamp": t.format(4),
         "stateEnteredEventDetails": {"name": "RecordFailure"}},
    ]
    steps_, builds = summarize_history(events)
    assert [(s["name"], s["status"]) for s in steps_] == [("TrainModel", "FAILED"),
                                                          ("RecordFailure", "RUNNING")]
    assert steps_[0]["seconds"] == 4.0
    assert builds == [{"step": "TrainModel", "build_id": "p:1", "status": "FAILED",
                       "logs": {"DeepLink": "file:///x"}}]
