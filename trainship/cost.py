"""A deployment's cost receipt: what its execution costs at AWS list prices.

Computed from the execution's history alone (GetExecutionHistory, which carries each
CodeBuild build's result), priced with trainship.pricing. The same history from the
local stack gives what the same run would cost on AWS with the stack's defaults.

What is counted, and how:

- state transitions: one per state entered, plus one per retry of a Task (a second
  attempt within one state entry), as Step Functions bills Standard workflows;
- Lambda: per function (the Task state that invokes it), one request per invocation and
  its duration from the Task's TaskStarted to its end event, rounded up to the
  millisecond (at least 1 ms), times the function's memory (trainship.pipeline). The
  history's duration includes Step Functions' invoke round trip, so it is an upper bound
  of Lambda's billed duration (which only the function's REPORT log line has). An attempt
  that failed with a ``Lambda.*`` service error (throttled, service exception) never ran
  the function and is not counted;
- CodeBuild: each build's StartTime to EndTime (from the build in the Task's result or
  failure cause), rounded up to whole minutes, on the build's environment and compute
  type; a build record without them (the local stack's) is priced on the stack's default
  environment for that step (DEFAULT_BUILD_ENVIRONMENTS).

For a running deployment the receipt is the cost so far: an attempt still running counts
up to ``now``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from trainship import pricing
from trainship.pipeline import BUILD_STEPS, LAMBDA_STEPS

# The stack's Lambda functions run on Graviton (infra/constructs/functions.py; a unit test
# keeps the two in step).
LAMBDA_ARCHITECTURE = "arm64"
# (environment type, compute type) of each build step with the stack's default context
# (infra/config.py: trainCompute "medium"; BuildImage MEDIUM on x86 for an amd64 cluster).
DEFAULT_BUILD_ENVIRONMENTS: Mapping[str, tuple[str, str]] = {
    "TrainModel": ("LINUX_CONTAINER", "BUILD_GENERAL1_MEDIUM"),
    "BuildImage": ("LINUX_CONTAINER", "BUILD_GENERAL1_MEDIUM"),
}
UNKNOWN_ENVIRONMENT = ("UNKNOWN", "UNKNOWN")
USD_DIGITS = 12  # a short Lambda invocation costs well under a millionth of a dollar

START_EVENTS = {"TaskStarted", "LambdaFunctionStarted"}
SCHEDULE_EVENTS = {"TaskScheduled", "LambdaFunctionScheduled"}
END_EVENTS = {"TaskSucceeded", "TaskFailed", "TaskTimedOut", "LambdaFunctionSucceeded",
              "LambdaFunctionFailed", "LambdaFunctionTimedOut"}
# the execution stopped while a task ran (stopped, timed out, failed uncaught, or the run
# before a redrive): that attempt ran, and was billed, up to this event
STOP_EVENTS = {"ExecutionAborted", "ExecutionTimedOut", "ExecutionFailed", "ExecutionRedriven"}
# Lambda errors that mean the service refused the invocation, so the function never ran;
# Lambda.Unknown (out of memory, a function timeout) ran and is billed. AWS: "Handle
# transient Lambda service exceptions" in the Step Functions developer guide.
LAMBDA_REFUSALS = {"Lambda.ServiceException", "Lambda.AWSLambdaException",
                   "Lambda.SdkClientException", "Lambda.ClientExecutionTimeoutException",
                   "Lambda.TooManyRequestsException"}


# --- the receipt (the contract: DeploymentRecord.cost in docs/openapi.json) -----------------

class FunctionCost(BaseModel):
    """One Lambda function's invocations in this execution."""

    function: str = Field(description="the Task state that invokes it (ValidateRequest, ...)")
    invocations: int
    memory_mb: int
    architecture: str
    billed_ms: int = Field(description="the invocations' durations, each rounded up to 1 ms")
    gb_seconds: float
    usd: float = Field(description="requests plus duration")


class BuildCost(BaseModel):
    """One CodeBuild build of this execution."""

    step: str | None
    build_id: str | None
    environment_type: str
    compute_type: str
    seconds: float
    billed_minutes: int
    usd: float | None = Field(description="null when the price table has no price for this "
                                          "environment and compute type")


class ComputeTypeMinutes(BaseModel):
    """Build minutes summed per environment and compute type."""

    environment_type: str
    compute_type: str
    billed_minutes: int
    usd: float | None


class CostReceipt(BaseModel):
    """What the execution costs at AWS list prices (trainship.pricing: region, date). For
    the local stack: what the same run would cost on AWS. ``total_usd`` is the sum of
    ``state_transitions_usd``, each function's ``usd`` and each priced build's ``usd``."""

    total_usd: float
    final: bool = Field(description="false while the deployment runs: the cost so far")
    state_transitions: int
    state_transitions_usd: float
    lambda_functions: list[FunctionCost]
    builds: list[BuildCost]
    build_minutes: list[ComputeTypeMinutes]
    unpriced: list[str] = Field(description="usage the price table has no price for (not "
                                            "in total_usd)")
    region: str
    prices_as_of: str
    currency: str
    excludes: list[str] = Field(description="what the receipt does not count")


# --- reading the history ---------------------------------------------------------------------

def instant(value: Any) -> datetime | None:
    """A timestamp as the history or a build result holds it: datetime, ISO 8601 text, or
    epoch seconds or milliseconds (Step Functions' JSON of a service's timestamp)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, int | float):
        stamp = datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    else:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _details(event: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


def _build_of(details: Mapping[str, Any]) -> dict[str, Any]:
    """The CodeBuild build a task's result (or failure cause) carries; {} when none."""
    raw = details.get("output") or details.get("cause") or ""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    build = data.get("Build", data) if isinstance(data, dict) else {}
    return build if isinstance(build, dict) else {}


@dataclass
class _Attempt:
    state: str
    kind: str  # "lambda" or "codebuild"
    started: datetime


@dataclass
class _Usage:
    transitions: int = 0
    # function -> [invocations, billed_ms]
    functions: dict[str, list[int]] = field(default_factory=dict)
    # (state, build result, seconds) per build
    builds: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)

    def close(self, attempt: _Attempt, end: datetime, details: Mapping[str, Any],
              kind: str) -> None:
        """Count an attempt that ended at ``end`` with this end event (kind, details)."""
        seconds = max((end - attempt.started).total_seconds(), 0.0)
        if attempt.kind == "lambda":
            if kind == "TaskFailed" and details.get("error") in LAMBDA_REFUSALS:
                return  # the service refused the invocation: the function never ran
            counts = self.functions.setdefault(attempt.state, [0, 0])
            counts[0] += 1
            counts[1] += max(1, math.ceil(seconds * 1000))
            return
        build = _build_of(details)
        if kind == "TaskFailed" and not build:
            return  # StartBuild refused (CodeBuild.*): no build ran
        start, stop = instant(build.get("StartTime")), instant(build.get("EndTime"))
        if start is not None and stop is not None:
            seconds = max((stop - start).total_seconds(), 0.0)
        self.builds.append((attempt.state, build, seconds))


def _is_lambda(details: Mapping[str, Any], kind: str) -> bool:
    return kind.startswith("LambdaFunction") or details.get("resourceType") == "lambda"


def _usage(events: list[dict[str, Any]], now: datetime | None) -> _Usage:
    usage = _Usage()
    state = ""
    attempts_in_state = 0
    running: _Attempt | None = None
    for event in events:
        kind = str(event["type"])
        details = _details(event)
        stamp = instant(event["timestamp"]) or datetime.now(UTC)
        if kind.endswith("StateEntered"):
            usage.transitions += 1
            state = str(details.get("name", ""))
            attempts_in_state = 0
        elif kind in SCHEDULE_EVENTS:
            attempts_in_state += 1
            if attempts_in_state > 1:
                usage.transitions += 1  # a retry is billed as another transition
        elif kind in START_EVENTS:
            running = _Attempt(state, "lambda" if _is_lambda(details, kind)
                               else str(details.get("resourceType", "")), stamp)
        elif (kind in END_EVENTS or kind in STOP_EVENTS) and running is not None:
            usage.close(running, stamp, details if kind in END_EVENTS else {}, kind)
            running = None
    if running is not None and now is not None:
        usage.close(running, now, {}, "")
    return usage


# --- pricing it --------------------------------------------------------------------------------

def _usd(value: float) -> float:
    return round(value, USD_DIGITS)


def _function_cost(function: str, invocations: int, billed_ms: int) -> FunctionCost:
    step = LAMBDA_STEPS.get(function)
    memory_mb = step.memory_mb if step else 0
    gb_seconds = memory_mb / 1024 * billed_ms / 1000
    usd = (invocations * pricing.LAMBDA_REQUEST.usd
           + gb_seconds * pricing.LAMBDA_GB_SECOND[LAMBDA_ARCHITECTURE].usd)
    return FunctionCost(function=function, invocations=invocations, memory_mb=memory_mb,
                        architecture=LAMBDA_ARCHITECTURE, billed_ms=billed_ms,
                        gb_seconds=round(gb_seconds, 6), usd=_usd(usd))


def _build_cost(state: str, build: Mapping[str, Any], seconds: float) -> BuildCost:
    environment = build.get("Environment") or {}
    default = DEFAULT_BUILD_ENVIRONMENTS.get(state, UNKNOWN_ENVIRONMENT)
    env_type = str(environment.get("Type") or default[0])
    compute = str(environment.get("ComputeType") or default[1])
    minutes = math.ceil(seconds / 60)
    price = pricing.BUILD_MINUTE.get((env_type, compute))
    return BuildCost(step=state or None, build_id=build.get("Id"), environment_type=env_type,
                     compute_type=compute, seconds=round(seconds, 1), billed_minutes=minutes,
                     usd=None if price is None else _usd(minutes * price.usd))


def receipt(events: list[dict[str, Any]], *, final: bool = True,
            now: datetime | None = None) -> CostReceipt:
    """The receipt of an execution's history (oldest event first). ``final=False`` with
    ``now``: a running execution, its running attempt counted up to ``now``."""
    usage = _usage(events, None if final else (now or datetime.now(UTC)))
    functions = [_function_cost(name, *usage.functions[name])
                 for name in sorted(usage.functions, key=_pipeline_order)]
    builds = [_build_cost(state, build, seconds) for state, build, seconds in usage.builds]
    per_type: dict[tuple[str, str], list[BuildCost]] = {}
    for build in builds:
        per_type.setdefault((build.environment_type, build.compute_type), []).append(build)
    build_minutes = [ComputeTypeMinutes(
        environment_type=env_type, compute_type=compute,
        billed_minutes=sum(b.billed_minutes for b in items),
        usd=None if any(b.usd is None for b in items)
        else _usd(sum(b.usd or 0.0 for b in items)))
        for (env_type, compute), items in per_type.items()]
    unpriced = [f"{b.step} build {b.build_id}: {b.billed_minutes} min on {b.environment_type} "
                f"{b.compute_type} (no price in trainship.pricing)"
                for b in builds if b.usd is None]
    transitions_usd = _usd(usage.transitions * pricing.STATE_TRANSITION.usd)
    total = (transitions_usd + sum(f.usd for f in functions)
             + sum(b.usd for b in builds if b.usd is not None))
    return CostReceipt(
        total_usd=_usd(total), final=final, state_transitions=usage.transitions,
        state_transitions_usd=transitions_usd, lambda_functions=functions, builds=builds,
        build_minutes=build_minutes, unpriced=unpriced, region=pricing.REGION,
        prices_as_of=pricing.PRICES_AS_OF, currency=pricing.CURRENCY,
        excludes=list(pricing.EXCLUDED))


def _pipeline_order(function: str) -> tuple[int, str]:
    order = list(LAMBDA_STEPS) + list(BUILD_STEPS)
    return (order.index(function) if function in order else len(order), function)
