"""Each state's run from a real execution history: the ASL file run on moto's
interpreter with stand-in steps (the ``pipeline`` fixture, tests/unit/asl_pipeline.py),
so the event sequences are the interpreter's, not written by hand."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.unit.asl_pipeline import Pipeline
from trainship.console.graph import StateRun
from trainship.console.history import state_details, state_runs
from trainship.errors import TransientError
from trainship.local import sfn

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

HAPPY_PATH = ["Route", "ValidateRequest", "TrainModel", "RegisterModel", "BuildImage",
              "DeployModel", "WaitForRollout", "CheckRollout", "IsRolloutDone",
              "SmokeTestModel", "ChooseRollout", "PromoteModel", "DeploymentSucceeded"]


def run(pipeline: Pipeline, body: dict[str, Any] | None = None
        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    arn = pipeline.start(body or {"model_name": "iris"})
    described = pipeline.wait(arn)
    return described, pipeline.history(arn)


def statuses(runs: dict[str, StateRun]) -> dict[str, str]:
    return {name: run.status for name, run in runs.items()}


def test_a_successful_deployment_has_every_state_it_entered_succeeded(
        pipeline: Pipeline) -> None:
    described, events = run(pipeline)
    assert described["status"] == "SUCCEEDED"
    runs = state_runs(events)
    assert statuses(runs) == dict.fromkeys(HAPPY_PATH, "succeeded")  # nothing else entered
    assert all(r.entered == 1 and r.retries == 0 for r in runs.values())
    assert all(r.seconds is not None and 0 <= r.seconds < 30 for r in runs.values())
    # the time in a state: from its StateEntered to its StateExited event
    entered = next(e for e in events if e["type"] == "TaskStateEntered"
                   and e["stateEnteredEventDetails"]["name"] == "TrainModel")
    exited = next(e for e in events if e["type"] == "TaskStateExited"
                  and e["stateExitedEventDetails"]["name"] == "TrainModel")
    assert runs["TrainModel"].seconds == pytest.approx(
        (exited["timestamp"] - entered["timestamp"]).total_seconds())
    (detail,) = state_details(events, "ValidateRequest")
    assert json.loads(detail.input or "") == {"model_name": "iris"}
    assert json.loads(detail.output or "")["deployment_id"] == "d-1"
    assert detail.error is None and detail.exited_at and detail.exited_at >= detail.entered_at


def test_a_failed_step_is_red_and_the_failure_path_amber(pipeline: Pipeline) -> None:
    pipeline.failing["BuildImage"] = 1
    described, events = run(pipeline)
    assert described["status"] == "FAILED"
    runs = state_runs(events)
    assert statuses(runs) == {
        **dict.fromkeys(HAPPY_PATH[:4], "succeeded"), "BuildImage": "failed",
        "BuildImageCaught": "caught", "RecordFailure": "caught",
        "DeploymentFailed": "caught"}
    (detail,) = state_details(events, "BuildImage")
    assert detail.error == "States.TaskFailed"
    assert json.loads(detail.cause or "")["Build"]["BuildStatus"] == "FAILED"
    (last,) = state_details(events, "DeploymentFailed")  # where the execution failed
    assert last.exited_at is None and last.error == "ImageBuildFailed" == described["error"]
    assert runs["DeploymentFailed"].seconds is not None  # until the execution failed


def test_a_redriven_step_that_succeeds_is_green_again(pipeline: Pipeline) -> None:
    pipeline.failing["BuildImage"] = 1
    described, _ = run(pipeline)
    pipeline.client.redrive_execution(executionArn=described["executionArn"])
    assert pipeline.wait(described["executionArn"])["status"] == "SUCCEEDED"
    runs = state_runs(pipeline.history(described["executionArn"]))
    assert runs["BuildImage"] == StateRun("succeeded", 2, runs["BuildImage"].seconds, 0)
    assert runs["DeploymentFailed"].status == "caught" and runs["DeploymentFailed"].entered == 2
    assert runs["ResumeFailedStep"].status == "caught"
    assert runs["DeploymentSucceeded"].status == "succeeded"
    first, second = state_details(pipeline.history(described["executionArn"]), "BuildImage")
    assert first.error == "States.TaskFailed" and second.error is None and second.output


def test_a_canary_loop_counts_each_state_entered_and_sums_its_time(pipeline: Pipeline) -> None:
    pipeline.canary_verdicts = ["next", "next", "promote"]
    described, events = run(pipeline, {"model_name": "m", "script": "x"})
    assert described["status"] == "SUCCEEDED"
    runs = state_runs(events)
    for name in ("ShiftTraffic", "WaitForCanary", "JudgeCanary", "CanaryVerdict"):
        assert runs[name].status == "succeeded" and runs[name].entered == 3, name
    # the Wait waited $.canary.interval_seconds (1 s) each time
    assert 3.0 <= (runs["WaitForCanary"].seconds or 0) < 10
    assert len(state_details(events, "WaitForCanary")) == 3


def test_a_canary_verdict_neither_next_nor_promote_is_the_failed_state(
        pipeline: Pipeline) -> None:
    pipeline.canary_verdicts = ["next", "hold"]
    _, events = run(pipeline, {"model_name": "m", "script": "x"})
    runs = state_runs(events)
    assert runs["CanaryVerdictUnknown"].status == "failed"
    assert runs["JudgeCanary"].status == "succeeded" and runs["JudgeCanary"].entered == 2
    assert runs["JudgeCanaryCaught"].status == "caught"
    assert [n for n, r in runs.items() if r.status == "failed"] == ["CanaryVerdictUnknown"]


def test_retries_count_the_attempts_beyond_the_first(pipeline: Pipeline) -> None:
    pipeline.failing["CheckRollout"] = 1
    pipeline.errors["CheckRollout"] = TransientError("briefly unavailable", step="CheckRollout")
    described, events = run(pipeline)
    assert described["status"] == "SUCCEEDED"
    runs = state_runs(events)
    assert runs["CheckRollout"] == StateRun("succeeded", 1, runs["CheckRollout"].seconds, 1)
    (detail,) = state_details(events, "CheckRollout")
    assert detail.error is None  # the retry succeeded


def test_a_running_execution_shows_the_state_it_is_in(pipeline: Pipeline) -> None:
    gate = threading.Event()
    inside = threading.Event()

    def route(resource: str, params: dict[str, Any]) -> Any:
        if params.get("FunctionName", "").endswith("SmokeTestModel"):
            inside.set()
            assert gate.wait(20)
        return pipeline(resource, params)

    sfn.install(route)
    arn = pipeline.start({"model_name": "iris"})
    try:
        assert inside.wait(20)
        time.sleep(0.05)
        events = pipeline.history(arn)
        runs = state_runs(events)
        assert runs["SmokeTestModel"].status == "running"
        assert runs["SmokeTestModel"].seconds is None  # no clock given
        assert "ChooseRollout" not in runs
        assert all(runs[n].status == "succeeded" for n in HAPPY_PATH[:9])
        later = datetime.now(UTC) + timedelta(seconds=5)
        assert (state_runs(events, now=later)["SmokeTestModel"].seconds or 0) >= 5
        (detail,) = state_details(events, "SmokeTestModel")
        assert detail.exited_at is None and detail.output is None and detail.input
    finally:
        gate.set()
    assert pipeline.wait(arn)["status"] == "SUCCEEDED"
    assert state_runs(pipeline.history(arn))["SmokeTestModel"].status == "succeeded"


def test_an_aborted_execution_leaves_the_state_it_was_in_failed() -> None:
    # one edge case by hand: moto's interpreter is not stopped mid-Wait here
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    events: list[dict[str, Any]] = [
        {"id": 1, "type": "ExecutionStarted", "timestamp": t0,
         "executionStartedEventDetails": {"input": "{}"}},
        {"id": 2, "type": "WaitStateEntered", "timestamp": t0 + timedelta(seconds=1),
         "stateEnteredEventDetails": {"name": "WaitForRollout", "input": "{}"}},
        {"id": 3, "type": "ExecutionAborted", "timestamp": t0 + timedelta(seconds=61),
         "executionAbortedEventDetails": {"error": "Stopped", "cause": "by a user"}},
    ]
    assert state_runs(events) == {"WaitForRollout": StateRun("failed", 1, 60.0, 0)}
    (detail,) = state_details(events, "WaitForRollout")
    assert (detail.error, detail.cause) == ("Stopped", "by a user")
