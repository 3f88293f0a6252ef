"""The deploy command's rollout flags (--rollout, --canary-*, --max-*) and the request's
``rollout`` they make (docs/rollouts.md).

The flags only spell the request: each value is checked by trainship.request.parse_rollout,
the same check the API makes, so a bad value is refused here with the API's own
InvalidRequest message, before anything is sent. Two conveniences the API does not take
are read here: an interval with a unit (``90s``, ``2m``, ``1h``) and an error rate in
percent (``1%``).
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from trainship.errors import TrainshipError
from trainship.request import STRATEGIES, parse_rollout
from trainship.terminal import EXIT_USAGE, CliError

# flag -> the rollout field it sets (all of them need the canary strategy)
CANARY_FLAGS: dict[str, str] = {
    "--canary-steps": "steps",
    "--canary-interval": "interval_seconds",
    "--max-error-rate": "max_error_rate",
    "--max-p99-ms": "max_p99_ms",
    "--canary-min-requests": "min_requests",
    "--canary-no-traffic": "no_traffic",
}
_UNITS = {"s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"^\s*(\d+)\s*([smh])\s*$", re.IGNORECASE)


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def add_rollout_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rollout", choices=STRATEGIES,
        help="how the new version of a model that already serves takes over: canary (a "
             "growing share of the traffic, judged on live metrics after each step, rolled "
             "back on a broken limit) or all-at-once; default: the stack's (canary); a "
             "model's first deployment goes all at once (docs/rollouts.md)")
    parser.add_argument("--canary-steps", metavar="PERCENTS",
                        help="the new version's share at each step, e.g. 10,50,100 (the "
                             "default; increasing, the last 100)")
    parser.add_argument("--canary-interval", metavar="DURATION",
                        help="how long each step runs before it is judged: seconds (120, the "
                             "default) or with a unit (90s, 2m, 1h)")
    parser.add_argument("--max-error-rate", metavar="RATE",
                        help="roll back when more than this share of the new version's "
                             "requests get a 5xx: a fraction (0.01, the default) or 1%%")
    parser.add_argument("--max-p99-ms", metavar="MS",
                        help="roll back when the new version's p99 latency is over this "
                             "(default: latency is not judged)")
    parser.add_argument("--canary-min-requests", metavar="N",
                        help="the requests a step needs on the new version for a verdict "
                             "(default 20)")
    parser.add_argument("--canary-no-traffic", choices=("promote", "rollback"),
                        help="what a step with fewer requests does: promote (go on without "
                             "a verdict, the default) or rollback")


def interval_value(text: str) -> Any:
    """``120`` or ``2m`` -> 120; anything else is passed on for the API's check to name."""
    match = _DURATION.match(text)
    if match:
        return int(match.group(1)) * _UNITS[match.group(2).lower()]
    return text.strip()


def rate_value(text: str) -> Any:
    """``0.01`` or ``1%`` -> 0.01; anything else is passed on for the API's check to name."""
    stripped = text.strip()
    if stripped.endswith("%"):
        try:
            return float(stripped[:-1]) / 100
        except ValueError:
            return stripped
    return stripped


def _value(field: str, text: str) -> Any:
    if field == "steps":
        return [part.strip() for part in text.split(",")]
    if field == "interval_seconds":
        return interval_value(text)
    if field == "max_error_rate":
        return rate_value(text)
    return text.strip()


def rollout_field(args: argparse.Namespace) -> str | dict[str, Any] | None:
    """The request's ``rollout`` from the flags: None (no flag: the stack's default), the
    strategy word, or an object with the strategy and the knobs given (as the API reads
    them: ``"10"`` -> 10). CliError (usage) for a canary knob with ``--rollout
    all-at-once`` or a value the API would refuse."""
    strategy = getattr(args, "rollout", None)
    given = {field: getattr(args, _dest(flag)) for flag, field in CANARY_FLAGS.items()
             if getattr(args, _dest(flag), None) is not None}
    if strategy == "all-at-once" and given:
        flags = ", ".join(flag for flag, field in CANARY_FLAGS.items() if field in given)
        raise CliError(f"{flags}: only for a canary rollout, but --rollout is all-at-once; "
                       "drop --rollout all-at-once or the canary flags", EXIT_USAGE)
    if not given:
        if strategy is not None:
            parse_rollout(strategy)  # a choice already: cannot fail, but the same check
        return strategy
    raw: dict[str, Any] = {"strategy": "canary",
                           **{field: _value(field, text) for field, text in given.items()}}
    try:
        rollout = parse_rollout(raw)
    except TrainshipError as exc:
        doc = exc.document()
        where = ", ".join(flag for flag, field in CANARY_FLAGS.items() if field in given)
        raise CliError(f"{where}: {doc.error}: {doc.message}: "
                       + "; ".join((doc.details or "").splitlines()), EXIT_USAGE) from None
    return rollout.model_dump(mode="json", include={"strategy", *given})
