"""An execution's history summarised: its steps (state, status, seconds) and its builds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from trainship.records import BuildJson, StepJson

FAILED_EVENTS = ("TaskFailed", "LambdaFunctionFailed", "TaskTimedOut", "ExecutionFailed")


def iso(value: Any) -> str | None:
    """A timestamp as the records hold it (ISO 8601, UTC); None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def _build(details: dict[str, Any], step: str | None) -> BuildJson | None:
    """The CodeBuild result a task event carries (its output, or its failure's cause)."""
    raw = details.get("output") or details.get("cause") or "{}"
    try:
        build = json.loads(raw)
    except ValueError:
        return None
    build = build.get("Build", build)
    return {"step": step, "build_id": build.get("Id"), "status": build.get("BuildStatus"),
            "logs": build.get("Logs") or {}}


def summarize_history(events: list[dict[str, Any]]) -> tuple[list[StepJson], list[BuildJson]]:
    """Steps (state name, status, seconds) and builds (CodeBuild results) from history."""
    steps: list[StepJson] = []
    entered: list[datetime] = []  # when each of ``steps`` was entered
    builds: list[BuildJson] = []
    for event in events:
        kind = event["type"]
        stamp = event["timestamp"]
        if isinstance(stamp, str):
            stamp = datetime.fromisoformat(stamp)
        if kind.endswith("StateEntered"):
            steps.append({"name": event["stateEnteredEventDetails"]["name"],
                          "status": "RUNNING", "entered": iso(stamp)})
            entered.append(stamp)
        elif kind.endswith("StateExited") and steps:
            current = steps[-1]
            if current["status"] == "RUNNING":
                current["status"] = "SUCCEEDED"
            current["seconds"] = round((stamp - entered[-1]).total_seconds(), 1)
        elif kind in FAILED_EVENTS and steps and steps[-1]["status"] == "RUNNING":
            steps[-1]["status"] = "FAILED"
        if kind in ("TaskSucceeded", "TaskFailed"):
            details = event.get("taskSucceededEventDetails") or event.get(
                "taskFailedEventDetails") or {}
            if details.get("resourceType") == "codebuild":
                build = _build(details, steps[-1]["name"] if steps else None)
                if build is not None:
                    builds.append(build)
    return steps, builds
