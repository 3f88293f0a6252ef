"""How each state of one execution went, from its Step Functions history (the events of
``get_execution_history``, boto3's shape, as AWS and moto return them). Pure.

A state's status is that of its latest entry (a loop enters a state more than once; a
redrive enters the failed state again):
- entered and exited: succeeded;
- a Task whose last attempt failed (TaskFailed, LambdaFunctionFailed, ...: a Catch took
  it on, or the execution failed in it): failed, as is the state just before a
  ``...Caught`` state (CanaryVerdictUnknown, a Pass that hands over to the failure path);
- the failure path's states (``...Caught``, RecordFailure, DeploymentFailed,
  ResumeFailedStep): caught, unless the execution itself failed in one of them other
  than DeploymentFailed (whose job is to fail it): failed;
- entered, not exited, the execution running: running;
- entered, not exited, the execution FAILED, TIMED_OUT or ABORTED: failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from trainship.console.graph import StateRun, Status

FAILURE_PATH = ("RecordFailure", "DeploymentFailed", "ResumeFailedStep")
# the history event types of a failed attempt of a Task (API_HistoryEvent.html)
ATTEMPT_FAILED = frozenset({
    "TaskFailed", "TaskTimedOut", "TaskStartFailed", "TaskSubmitFailed",
    "LambdaFunctionFailed", "LambdaFunctionTimedOut", "LambdaFunctionStartFailed",
    "LambdaFunctionScheduleFailed", "ActivityFailed", "ActivityTimedOut",
    "ActivityScheduleFailed"})
ATTEMPT_SUCCEEDED = frozenset({"TaskSucceeded", "LambdaFunctionSucceeded", "ActivitySucceeded"})
ATTEMPT_SCHEDULED = frozenset({"TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled"})
EXECUTION_ENDED = frozenset({"ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"})


@dataclass(frozen=True)
class StateDetail:
    """One entry into a state: its input, and its output or error, as JSON text."""

    entered_at: datetime
    exited_at: datetime | None
    input: str | None
    output: str | None
    error: str | None
    cause: str | None


@dataclass
class _Entry:
    name: str
    entered_at: datetime
    input: str | None
    exited_at: datetime | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    failed: bool = False
    attempts: int = 0
    ended_at: datetime | None = None  # the execution ended (failed) while in it
    ended_execution: bool = False


def is_failure_path(name: str) -> bool:
    return name.endswith("Caught") or name in FAILURE_PATH


def _stamp(value: Any) -> datetime:
    stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(stamp, datetime)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _details(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The event's ``...EventDetails`` (each event type has its own key)."""
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, Mapping):
            return value
    return {}


def _entries(events: Sequence[Mapping[str, Any]]) -> tuple[list[_Entry], bool]:
    """Every entry into a state, in order, and whether the execution is still running."""
    entries: list[_Entry] = []
    open_entries: dict[str, _Entry] = {}
    running = True
    for event in sorted(events, key=lambda e: int(e.get("id", 0))):
        kind = str(event.get("type", ""))
        stamp = _stamp(event["timestamp"])
        current = entries[-1] if entries and entries[-1].exited_at is None else None
        if kind.endswith("StateEntered"):
            details = event.get("stateEnteredEventDetails") or {}
            entry = _Entry(str(details.get("name")), stamp, details.get("input"))
            entries.append(entry)
            open_entries[entry.name] = entry
        elif kind.endswith("StateExited"):
            details = event.get("stateExitedEventDetails") or {}
            exited = open_entries.pop(str(details.get("name")), None)
            if exited is not None:
                exited.exited_at = stamp
                exited.output = details.get("output")
        elif kind in ATTEMPT_SCHEDULED and current is not None:
            current.attempts += 1
        elif kind in ATTEMPT_FAILED and current is not None:
            details = _details(event)
            current.failed = True
            current.error, current.cause = details.get("error"), details.get("cause")
        elif kind in ATTEMPT_SUCCEEDED and current is not None:
            current.failed, current.error, current.cause = False, None, None
        elif kind in EXECUTION_ENDED:
            running = False
            details = _details(event)
            for entry in open_entries.values():
                entry.ended_at, entry.ended_execution, entry.failed = stamp, True, True
                if entry.error is None:
                    entry.error, entry.cause = details.get("error"), details.get("cause")
            open_entries.clear()
        elif kind == "ExecutionSucceeded":
            running = False
        elif kind in ("ExecutionStarted", "ExecutionRedriven"):
            running = True
    # a state that hands over to the failure path without a failed attempt of its own
    for before, after in pairwise(entries):
        if after.name.endswith("Caught") and not is_failure_path(before.name):
            before.failed = True
    return entries, running


def _status(entry: _Entry, running: bool) -> Status:
    if is_failure_path(entry.name):
        own_failure = entry.ended_execution and entry.name != "DeploymentFailed"
        return "failed" if own_failure else "caught"
    if entry.failed:
        return "failed"
    if entry.exited_at is not None:
        return "succeeded"
    return "running" if running else "failed"


def state_runs(events: Sequence[Mapping[str, Any]],
               now: datetime | None = None) -> dict[str, StateRun]:
    """Each state entered in the execution: its status (the module's rules), how often it
    was entered, the time spent in it (summed over its entries; a running entry counts
    until ``now`` when given, else not at all) and its Task retries (attempts beyond the
    first of each entry). States never entered are absent (not reached)."""
    entries, running = _entries(events)
    runs: dict[str, StateRun] = {}
    for entry in entries:
        end = entry.exited_at or entry.ended_at or (now if running and now else None)
        seconds = (_stamp(end) - entry.entered_at).total_seconds() if end else None
        before = runs.get(entry.name)
        total = before.seconds if before else None
        if seconds is not None:
            total = (total or 0.0) + max(seconds, 0.0)
        runs[entry.name] = StateRun(
            status=_status(entry, running),
            entered=(before.entered if before else 0) + 1,
            seconds=total,
            retries=(before.retries if before else 0) + max(entry.attempts - 1, 0))
    return runs


def state_details(events: Sequence[Mapping[str, Any]], name: str) -> list[StateDetail]:
    """Each entry into state ``name``, in order: when, its input, its output when it
    exited, its error and cause when it failed."""
    entries, _ = _entries(events)
    return [StateDetail(entered_at=e.entered_at, exited_at=e.exited_at, input=e.input,
                        output=e.output if e.exited_at else None,
                        error=e.error if e.failed else None,
                        cause=e.cause if e.failed else None)
            for e in entries if e.name == name]
