"""PLACEHOLDER (console-pages' branch only): the contract's signatures of
trainship.console.history, replaced whole by helper console-graph's module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainship.console.graph import StateRun


@dataclass(frozen=True)
class StateDetail:
    entered: str | None
    exited: str | None
    input: str | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None


def state_runs(events: Sequence[Mapping[str, Any]]) -> dict[str, StateRun]:
    runs: dict[str, StateRun] = {}
    for event in events:
        kind = str(event.get("type", ""))
        name = (event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails")
                or {}).get("name")
        if name and kind.endswith("StateEntered"):
            runs[name] = StateRun("running")
        elif name and kind.endswith("StateExited"):
            runs[name] = StateRun("succeeded")
    return runs


def state_details(events: Sequence[Mapping[str, Any]], name: str) -> list[StateDetail]:
    details: list[StateDetail] = []
    for event in events:
        kind = str(event.get("type", ""))
        if kind.endswith("StateEntered") and event["stateEnteredEventDetails"]["name"] == name:
            details.append(StateDetail(str(event.get("timestamp")), None,
                                       input=event["stateEnteredEventDetails"].get("input")))
        elif kind.endswith("StateExited") and event["stateExitedEventDetails"]["name"] == name:
            last = details.pop() if details else StateDetail(None, None)
            details.append(StateDetail(last.entered, str(event.get("timestamp")), last.input,
                                       event["stateExitedEventDetails"].get("output")))
    return details
