"""A canary rollout as the CLI shows it (docs/rollouts.md): the steps judged so far as a
small table (`trainship status`, the end of `trainship deploy`), where a running one is,
and the numbers of a CanaryFailed error document. Plain dicts in, lines out: the verdicts
are trainship.canary.Verdict.to_dict() with the step's ``effective_share``, as the
result's ``canary`` and the CanaryFailed document's ``details`` carry them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

HEADER = (f"  {'step':5} {'share':>5} {'eff.':>5}  {'verdict':8}"
          f" | {'new: req':>8} {'5xx':>5} {'rate':>7} {'p99 ms':>7}"
          f" | {'old: req':>8} {'5xx':>5} {'rate':>7} {'p99 ms':>7}")


def _count(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:g}"


def _rate(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value * 100:.3g}%"


def _p99(numbers: Mapping[str, Any]) -> str:
    value = numbers.get("p99_ms")
    if not isinstance(value, int | float):
        return "-"
    # above the histogram's highest bucket the estimate is a lower bound
    return (">" if numbers.get("p99_above_histogram") else "") + f"{value:.4g}"


def _share(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:g}%"


def _version(numbers: Any) -> str:
    numbers = numbers if isinstance(numbers, Mapping) else {}
    return (f"{_count(numbers.get('requests')):>8} {_count(numbers.get('errors')):>5} "
            f"{_rate(numbers.get('error_rate')):>7} {_p99(numbers):>7}")


def verdict_rows(verdicts: Sequence[Mapping[str, Any]]) -> list[str]:
    """The table: one row per judged step (its share asked and effective, the verdict, the
    new and the old version's requests, 5xx, error rate and p99 over the step), then each
    step's reason. The old version's numbers are shown, not judged (docs/rollouts.md)."""
    lines = [HEADER]
    reasons = []
    for verdict in verdicts:
        numbers = verdict.get("numbers") or {}
        step = f"{numbers.get('step', '?')}/{numbers.get('steps', '?')}"
        lines.append(f"  {step:5} {_share(numbers.get('share')):>5} "
                     f"{_share(verdict.get('effective_share')):>5}  "
                     f"{verdict.get('action', '?')!s:8}"
                     f" | {_version(numbers.get('new'))} | {_version(numbers.get('old'))}")
        if verdict.get("reason"):
            reasons.append(f"  {step}: {verdict['reason']}")
    return lines + reasons


def _verdicts(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def result_lines(result: Mapping[str, Any]) -> list[str]:
    """A finished deployment's canary (its result's ``canary``): what happened and the
    table; no lines when it went all at once."""
    verdicts = _verdicts(result.get("canary"))
    if not verdicts:
        return []
    last = verdicts[-1]
    steps = (last.get("numbers") or {}).get("steps", len(verdicts))
    outcome = ("promoted" if last.get("action") == "promote" else str(last.get("action")))
    return [f"canary: {outcome} after {len(verdicts)} of {steps} steps", *verdict_rows(verdicts)]


def progress_lines(progress: Mapping[str, Any]) -> list[str]:
    """A running (or cut short) canary, from the status record's ``canary``: the step it is
    at, the share the new version has now, and the steps judged so far."""
    step, steps = progress.get("step"), progress.get("steps")
    effective = progress.get("effective_share")
    line = f"canary: step {step} of {steps} ({_share(progress.get('share'))})"
    if isinstance(effective, int | float):
        line += f"; the new version has {_share(effective)} of the traffic now"
    verdicts = _verdicts(progress.get("verdicts"))
    return [line, *(verdict_rows(verdicts) if verdicts else [])]


def failure_lines(details: str) -> list[str] | None:
    """A CanaryFailed document's ``details`` as the table: JSON of the deciding ``verdict``,
    the ``new_version`` and ``live_version`` and the ``history`` of the steps judged (the
    deciding one last; ``history_omitted``: how many early steps were left out for size).
    None when it is not that JSON (it is printed as it is)."""
    try:
        data = json.loads(details)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, Mapping):
        return None
    verdicts = list(_verdicts(data.get("history")))
    deciding = data.get("verdict")
    if isinstance(deciding, Mapping) and not any(
            v.get("numbers") == deciding.get("numbers") for v in verdicts):
        verdicts.append(deciding)  # the history was cut to its last steps, or lacks it
    if not verdicts:
        return None
    lines = []
    if data.get("new_version") or data.get("live_version"):
        lines.append(f"  new version v{data.get('new_version')}, live version "
                     f"v{data.get('live_version')}")
    if data.get("history_omitted"):
        lines.append(f"  ({data['history_omitted']} earlier steps left out)")
    return lines + verdict_rows(verdicts)
