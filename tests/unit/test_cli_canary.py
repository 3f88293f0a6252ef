"""Issue 15: what `trainship status` and `trainship deploy` show of a canary rollout: the
step a running one is at (from the execution's latest state), a finished one's verdicts as
a table, a CanaryFailed document's numbers readably; --output json passes them through."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trainship import cli
from trainship.canary import Policy, Sample, judge
from trainship.cli_canary import failure_lines, progress_lines, result_lines, verdict_rows
from trainship.config import CliSettings
from trainship.deployments.history import canary_progress
from trainship.deployments.store import record_of
from trainship.records import DeploymentRecord
from trainship.terminal import EXIT_FAILED, EXIT_OK, print_error, report, wait_for

SETTINGS = CliSettings(api="", debug=False, home=Path(".trainship"))


def sample(requests: float, errors: float, fast: float) -> Sample:
    """``fast`` of the requests under 50 ms, the rest under 250 ms."""
    return Sample(requests=requests, errors=errors,
                  buckets=((0.05, fast), (0.1, fast), (0.25, requests), (float("inf"), requests)))


def verdict(step: int, new: Sample, old: Sample, effective: int,
            policy: Policy | None = None) -> dict[str, Any]:
    """A step's verdict as the result and the document carry it (canary.judge's own)."""
    verdict = judge(policy or Policy(), step, new, old)
    return {**verdict.to_dict(), "share": verdict.numbers["share"], "effective_share": effective,
            "instances": {"new": 1, "old": 1}}


STEP1 = verdict(0, sample(52, 0, 50), sample(480, 1, 470), 10)
STEP2 = verdict(1, sample(260, 1, 250), sample(250, 0, 245), 50)
STEP3 = verdict(2, sample(515, 2, 500), Sample(), 100)
FAILING = verdict(1, sample(200, 30, 150), sample(210, 0, 200), 50)


def test_the_fixtures_are_what_judge_decides() -> None:
    assert [v["action"] for v in (STEP1, STEP2, STEP3, FAILING)] == [
        "next", "next", "promote", "rollback"]


def test_a_promoted_canary_is_a_table_with_both_versions() -> None:
    lines = result_lines({"model_version": "2", "canary": [STEP1, STEP2, STEP3]})
    assert lines[0] == "canary: promoted after 3 of 3 steps"
    header, rows = lines[1], lines[2:5]
    assert "new: req" in header and "old: req" in header and "eff." in header
    cells = [row.split() for row in rows]
    # step, share, effective, verdict | new requests, 5xx, rate, p99 | old ...
    assert cells[0][:5] == ["1/3", "10%", "10%", "next", "|"]
    assert cells[0][5:9] == ["52", "0", "0%", "211"]
    assert cells[0][10:14] == ["480", "1", "0.208%", "178"]
    assert cells[2][:4] == ["3/3", "100%", "100%", "promote"]
    assert cells[2][10:14] == ["0", "0", "-", "-"]  # no old traffic at 100%: no numbers
    # each step's reason follows the table
    assert lines[5] == f"  1/3: {STEP1['reason']}"
    assert len(lines) == 8


def test_an_all_at_once_result_shows_no_canary() -> None:
    assert result_lines({"model_version": "2"}) == []
    assert result_lines({"model_version": "2", "canary": None}) == []


def test_a_p99_beyond_the_histogram_is_a_lower_bound() -> None:
    slow = Sample(requests=100, errors=0, buckets=((0.25, 10), (5.0, 50), (float("inf"), 100)))
    row = verdict_rows([verdict(0, slow, Sample(), 10, Policy(max_p99_ms=300))])[1]
    assert ">5000" in row.split()


def test_the_effective_share_is_shown_beside_the_asked_one() -> None:
    """On Kubernetes the replica ratio only approaches the step (docs/rollouts.md)."""
    row = verdict_rows([{**STEP1, "effective_share": 33}])[1]
    assert row.split()[:3] == ["1/3", "10%", "33%"]


# --- a CanaryFailed document ----------------------------------------------------------

def details_of(history: list[dict[str, Any]], omitted: int = 0) -> str:
    """CanaryFailed's details as JudgeCanary writes them (trainship.canary_steps): the
    deciding verdict, the versions and the steps judged, the deciding one last."""
    return json.dumps({"verdict": {k: FAILING[k] for k in ("action", "reason", "numbers")},
                       "new_version": "2", "live_version": "1", "history": history,
                       "history_omitted": omitted}, sort_keys=True)


def canary_failed(details: str) -> dict[str, Any]:
    return {"error": "CanaryFailed", "step": "JudgeCanary",
            "message": f"churn v2 was rolled back at canary step 2 of 3: {FAILING['reason']} "
                       "v1 keeps the URL and all of the traffic.",
            "details": details, "help": "Fix the version and deploy again."}


def test_canary_failed_details_are_a_table() -> None:
    lines = failure_lines(details_of([STEP1, FAILING]))
    assert lines is not None
    assert lines[0] == "  new version v2, live version v1"
    rows = [line.split() for line in lines[2:4]]
    assert rows[0][:4] == ["1/3", "10%", "10%", "next"]
    assert rows[1][:4] == ["2/3", "50%", "50%", "rollback"]
    assert rows[1][5:8] == ["200", "30", "15%"]  # the new version's numbers that decided it
    assert rows[1][10:13] == ["210", "0", "0%"]  # the old one's, beside them
    assert len([line for line in lines if "|" in line]) == 3  # header and two steps, once


def test_canary_failed_details_cut_for_size() -> None:
    """Only the deciding verdict left (every earlier step omitted): it is still a row."""
    lines = failure_lines(details_of([], omitted=1))
    assert lines is not None
    assert lines[1] == "  (1 earlier steps left out)"
    assert lines[3].split()[:4] == ["2/3", "50%", "-", "rollback"]  # no effective share known


def test_a_new_version_that_stopped_serving_has_no_numbers() -> None:
    """JudgeCanary's verdict when no instance of the new version answered /metrics."""
    gone = {**FAILING, "numbers": {**FAILING["numbers"], "new": None}}
    row = verdict_rows([gone])[1].split()
    assert row[5:9] == ["-", "-", "-", "-"] and row[10:12] == ["210", "0"]


@pytest.mark.parametrize("details", ["", "not json", "[1, 2]", '{"other": 1}'])
def test_other_details_stay_as_they_are(details: str) -> None:
    assert failure_lines(details) is None


def test_print_error_shows_canary_failed_readably(capsys: pytest.CaptureFixture[str]) -> None:
    print_error(canary_failed(details_of([STEP1, FAILING])))
    err = capsys.readouterr().err
    assert "error:   CanaryFailed" in err and "step:    JudgeCanary" in err
    assert '"numbers"' not in err  # not the raw JSON
    assert "2/3     50%   50%  rollback" in err
    assert f"2/3: {FAILING['reason']}" in err


def test_print_error_leaves_other_documents_alone(capsys: pytest.CaptureFixture[str]) -> None:
    print_error({"error": "ScriptFailed", "message": "m", "details": '{"new": {}}'})
    assert 'details:\n  {"new": {}}' in capsys.readouterr().err


def test_deploy_reports_the_steps_of_a_promoted_canary(
        capsys: pytest.CaptureFixture[str]) -> None:
    record = {"deployment_id": "d-1", "status": "SUCCEEDED",
              "result": {"status": "SUCCEEDED", "deployment_id": "d-1",
                         "inference_url": "http://127.0.0.1:1/m", "model_version": "2",
                         "canary": [STEP1, STEP2, STEP3]}}
    assert report(record, "text") == EXIT_OK  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "canary: promoted after 3 of 3 steps" in out and "3/3" in out
    assert report(record, "json") == EXIT_OK  # type: ignore[arg-type]
    assert json.loads(capsys.readouterr().out)["canary"] == [STEP1, STEP2, STEP3]


def test_deploy_reports_canary_failed(capsys: pytest.CaptureFixture[str]) -> None:
    doc = canary_failed(details_of([STEP1, FAILING]))
    record = {"deployment_id": "d-1", "status": "FAILED", "error": doc}
    assert report(record, "text") == EXIT_FAILED  # type: ignore[arg-type]
    assert "rollback" in capsys.readouterr().err
    assert report(record, "json") == EXIT_FAILED  # type: ignore[arg-type]
    assert json.loads(capsys.readouterr().out)["details"] == doc["details"]  # as it is


# --- a running canary: the status record's canary, from the latest state -----------------

T0 = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)


def state_with(canary: dict[str, Any] | None) -> dict[str, Any]:
    state: dict[str, Any] = {"deployment_id": "d-1", "model_name": "churn",
                             "release": {"strategy": "canary", "steps": [10, 50, 100]}}
    if canary is not None:
        state["canary"] = canary
    return state


def history(*states: tuple[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Each state entered with its input, and the last still running."""
    events: list[dict[str, Any]] = [{"type": "ExecutionStarted", "timestamp": T0}]
    for i, (name, data) in enumerate(states):
        at = T0 + timedelta(seconds=10 * i)
        payload = json.dumps(data)
        if i:
            events.append({"type": "TaskStateExited", "timestamp": at,
                           "stateExitedEventDetails": {"name": states[i - 1][0],
                                                       "output": payload}})
        events.append({"type": "TaskStateEntered", "timestamp": at,
                       "stateEnteredEventDetails": {"name": name, "input": payload}})
    return events


CANARY_AT_STEP2 = {"step": 1, "steps": [10, 50, 100], "interval_seconds": 120,
                   "max_error_rate": 0.01, "max_p99_ms": None, "min_requests": 20,
                   "no_traffic": "promote", "new_version": "2", "live_version": "1",
                   "share": 50, "effective_share": 50, "baseline": {"2": {"p-1": "..."}},
                   "history": [STEP1], "action": "next"}


def test_progress_from_the_latest_state() -> None:
    events = history(("SmokeTestModel", state_with(None)),
                     ("ShiftTraffic", state_with({**CANARY_AT_STEP2, "effective_share": 10})),
                     ("WaitForCanary", state_with(CANARY_AT_STEP2)))
    assert canary_progress(events) == {"step": 2, "steps": 3, "share": 50,
                                       "effective_share": 50, "verdicts": [STEP1]}


def test_no_canary_no_progress() -> None:
    assert canary_progress(history(("TrainModel", state_with(None)))) is None
    assert canary_progress([]) is None
    broken = history(("WaitForCanary", state_with(CANARY_AT_STEP2)))
    broken[-1]["stateEnteredEventDetails"]["input"] = "{not json"
    assert canary_progress(broken) is None


def execution(status: str) -> dict[str, Any]:
    return {"name": "d-1", "executionArn": "arn:aws:states:r:1:execution:sm:d-1",
            "status": status, "startDate": T0}


def test_the_status_record_of_a_running_canary_has_it() -> None:
    events = history(("SmokeTestModel", state_with(None)),
                     ("WaitForCanary", state_with(CANARY_AT_STEP2)))
    record = record_of(execution("RUNNING"), events)
    assert record["canary"]["step"] == 2
    # the API's answer model takes it (docs/openapi.json)
    assert DeploymentRecord.model_validate(record).canary is not None
    done = record_of({**execution("SUCCEEDED"), "output": json.dumps(
        {"canary": [STEP1, STEP2, STEP3]})}, events)
    assert "canary" not in done  # the result has every step


def test_status_shows_where_a_running_canary_is(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    events = history(("SmokeTestModel", state_with(None)),
                     ("WaitForCanary", state_with(CANARY_AT_STEP2)))
    record = record_of(execution("RUNNING"), events)
    monkeypatch.setattr("trainship.client.Client.get", lambda self, _id: copy.deepcopy(record))
    args = cli.build_parser().parse_args(["status", "d-1", "--api", "http://127.0.0.1:9"])
    assert cli.cmd_status(args, SETTINGS) == EXIT_OK
    out = capsys.readouterr().out
    assert "canary: step 2 of 3 (50%); the new version has 50% of the traffic now" in out
    assert "1/3     10%   10%  next" in out
    args = cli.build_parser().parse_args(["status", "d-1", "--api", "http://127.0.0.1:9",
                                          "--output", "json"])
    assert cli.cmd_status(args, SETTINGS) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["canary"] == record["canary"]


def test_status_of_a_finished_canary(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    record = {"deployment_id": "d-1", "status": "SUCCEEDED", "steps": [], "builds": [],
              "result": {"inference_url": "http://x/m", "canary": [STEP1, STEP2, STEP3]}}
    monkeypatch.setattr("trainship.client.Client.get", lambda self, _id: record)
    args = cli.build_parser().parse_args(["status", "d-1", "--api", "http://127.0.0.1:9"])
    assert cli.cmd_status(args, SETTINGS) == EXIT_OK
    out = capsys.readouterr().out
    assert "canary: promoted after 3 of 3 steps" in out and "2/3     50%   50%  next" in out


def test_progress_lines_without_an_effective_share() -> None:
    lines = progress_lines({"step": 1, "steps": 2, "share": 10, "effective_share": None,
                            "verdicts": []})
    assert lines == ["canary: step 1 of 2 (10%)"]


def test_deploy_follows_the_canary(capsys: pytest.CaptureFixture[str]) -> None:
    """While `trainship deploy` waits: each share the new version gets and each verdict,
    once, however often the status is read."""
    running = {"deployment_id": "d-1", "status": "RUNNING", "builds": [],
               "steps": [{"name": "WaitForCanary", "status": "RUNNING", "entered": None}]}
    at = [
        {**running, "canary": {"step": 1, "steps": 3, "share": 10, "effective_share": 10,
                               "verdicts": []}},
        {**running, "canary": {"step": 1, "steps": 3, "share": 10, "effective_share": 10,
                               "verdicts": []}},
        {**running, "canary": {"step": 2, "steps": 3, "share": 50, "effective_share": 10,
                               "verdicts": [STEP1]}},   # judged, not shifted yet
        {**running, "canary": {"step": 2, "steps": 3, "share": 50, "effective_share": 50,
                               "verdicts": [STEP1]}},
        {**running, "status": "FAILED", "error": {"error": "CanaryFailed", "message": "m"},
         "canary": {"step": 2, "steps": 3, "share": 50, "effective_share": 50,
                    "verdicts": [STEP1, FAILING]}},
    ]
    answers = iter(at)

    class Client:
        def get(self, deployment_id: str) -> dict[str, Any]:
            return next(answers)

    record = wait_for(Client(), "d-1", progress=True, poll=0)  # type: ignore[arg-type]
    assert record["status"] == "FAILED"
    lines = [line.split("] ", 1)[1] for line in capsys.readouterr().err.splitlines()
             if "canary" in line]
    assert lines == [
        "canary: the new version has 10% of the traffic",
        f"canary step 1/3: next: {STEP1['reason']}",
        "canary: the new version has 50% of the traffic",
        f"canary step 2/3: rollback: {FAILING['reason']}",
    ]


def test_status_of_a_canary_failed_shows_the_table_once(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A failed deployment keeps the record's canary; CanaryFailed's details hold the same
    steps, so the status prints them once (another failure shows where the canary was)."""
    progress = {"step": 2, "steps": 3, "share": 50, "effective_share": 50,
                "verdicts": [STEP1, FAILING]}
    record: dict[str, Any] = {"deployment_id": "d-1", "status": "FAILED", "steps": [],
                              "builds": [], "canary": progress,
                              "error": canary_failed(details_of([STEP1, FAILING]))}
    monkeypatch.setattr("trainship.client.Client.get", lambda self, _id: record)
    args = cli.build_parser().parse_args(["status", "d-1", "--api", "http://127.0.0.1:9"])
    assert cli.cmd_status(args, SETTINGS) == EXIT_OK
    out = capsys.readouterr()
    assert "canary: step" not in out.out
    assert (out.out + out.err).count("2/3     50%   50%  rollback") == 1
    record["error"] = {"error": "TransientError", "message": "the cluster did not answer",
                       "step": "ShiftTraffic"}
    assert cli.cmd_status(args, SETTINGS) == EXIT_OK
    assert "canary: step 2 of 3 (50%)" in capsys.readouterr().out
