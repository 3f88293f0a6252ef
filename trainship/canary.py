"""Canary rollouts (issue 15): reading the inference service's /metrics and judging a
step (plain logic, no I/O; the drivers scrape, the state machine waits and asks).

A version's numbers come from its own serving processes' Prometheus text
(trainship/serving/metrics.py): ``trainship_requests_total{path="/invocations", status}``
and the ``trainship_request_seconds`` histogram. :func:`parse` reads one process's text
(every worker of it already summed by prometheus_client's multiprocess mode),
:func:`since` takes the increase over a step, :func:`total` adds up a version's
processes or pods. Take the increase per process first, then add them up
(:func:`delta` does both, by process key): a process that restarted starts its counters
from zero, which only shows in its own series, never in a sum (the same reason Prometheus
says to take ``rate()`` before ``sum()``).

Judging a step (:func:`judge`, on the increases of the step's interval) -- the rules, in
this order:

1. *Errors* are the new version's 5xx answers to /invocations; a 4xx is the client's
   fault, not the version's, but it is an answer, so it counts among the requests. When
   the new version's errors exceed ``max_error_rate`` of its requests -- or of
   ``min_requests`` when it saw fewer than that, i.e. even if every missing request had
   succeeded -- it is rolled back. So a version that failed 5 of its 5 requests is
   rolled back even though 5 are too few to judge otherwise.
2. *Too few requests*: fewer than ``min_requests`` answers on the new version in the
   step. Then ``no_traffic`` decides: ``rollback``, or ``promote``, which means "go on
   to the next step without a verdict" (promote at the last step); the reason says so.
   Latency is not judged on too few requests.
3. *Error rate* over ``max_error_rate`` (``errors / requests``): rollback.
4. *p99 latency* over ``max_p99_ms`` (when set), estimated from the histogram as
   Prometheus' ``histogram_quantile`` does: rollback. When the p99 lies above the
   histogram's highest finite bucket the estimate is only a lower bound; a limit at or
   above that bound cannot be checked, and the step is rolled back (fail closed, said in
   the reason). :data:`MEASURED_UP_TO_MS` is what the service's histogram measures, and
   :class:`Policy` refuses a limit at or above it.
5. Otherwise: ``next``, or ``promote`` after the last step.

The old (live) version's numbers are measured on the same traffic and shown beside the
new one's (the status, the CanaryFailed document), but they decide nothing: no rollback
for being "worse than the old one" under the user's limits. The limits are the user's
stated contract and a rollback must be explained by one of them; at a canary's small
share, "clearly worse" would need a statistical test whose false alarms on healthy
versions would be a hidden knob; and an old version that is itself failing (a shared
dependency down) would make a relative rule pass a bad version or fail a good one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

# trainship/serving/metrics.py (the image ships that package alone; tests/unit/test_canary.py
# checks these against it)
INVOCATIONS = "/invocations"
REQUESTS_FAMILY = "trainship_requests"  # the parser drops a counter's _total suffix
REQUESTS_SAMPLE = "trainship_requests_total"
LATENCY_FAMILY = "trainship_request_seconds"
MEASURED_UP_TO_MS = 5000.0  # the highest finite latency bucket: 5 s

Action = Literal["next", "promote", "rollback"]
NoTraffic = Literal["promote", "rollback"]
NO_TRAFFIC: tuple[NoTraffic, ...] = ("promote", "rollback")
# The waits of all of a canary's steps together: the state machine's execution timeout
# (infra/statemachine/deploy.asl.json) has room for this much of canary on top of the
# worst path of everything else (tests/infra/test_limits.py), so a canary never outlasts
# the execution (which would end it without RecordFailure taking the new version out)
MAX_CANARY_SECONDS = 24 * 3600

Buckets = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Sample:
    """One process's, pod's or version's counters (or their increase over a step).

    ``requests``: /invocations answers; ``errors``: those with a 5xx status; ``buckets``:
    the cumulative ``(le, count)`` of the /invocations latency histogram in seconds,
    ascending, ``+Inf`` last (empty: no histogram seen)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: Buckets = ()


def parse(text: str) -> Sample:
    """One serving process's /metrics text (Prometheus text format 0.0.4), read with
    prometheus_client's parser. ValueError when it is not that text or has no
    ``trainship_request_seconds`` histogram (every trainship inference service has one,
    zeros included, from its start): not the /metrics of a trainship model."""
    # imported here: prometheus_client chooses its multiprocess mode when first imported,
    # which must not happen merely because this module was (trainship/serving/metrics.py)
    from prometheus_client.parser import text_string_to_metric_families

    requests = errors = 0.0
    counts: dict[float, float] = {}
    seen_histogram = False
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise ValueError(f"not Prometheus text: {exc}") from exc
    for family in families:
        if family.name == REQUESTS_FAMILY:
            for sample in family.samples:
                if (sample.name == REQUESTS_SAMPLE
                        and sample.labels.get("path") == INVOCATIONS):
                    requests += sample.value
                    if _is_5xx(sample.labels.get("status", "")):
                        errors += sample.value
        elif family.name == LATENCY_FAMILY and family.type == "histogram":
            seen_histogram = True
            for sample in family.samples:
                if sample.name == f"{LATENCY_FAMILY}_bucket" and "le" in sample.labels:
                    le = float(sample.labels["le"])
                    counts[le] = counts.get(le, 0.0) + sample.value
    if not seen_histogram:
        raise ValueError(f"no {LATENCY_FAMILY} histogram: not the /metrics of a trainship "
                         "inference service")
    buckets = tuple(sorted(counts.items()))
    if buckets and not math.isinf(buckets[-1][0]):
        raise ValueError(f"the {LATENCY_FAMILY} histogram has no +Inf bucket")
    return Sample(requests=requests, errors=errors, buckets=buckets)


def _is_5xx(status: str) -> bool:
    return status.isdigit() and 500 <= int(status) <= 599


def _count_at(buckets: Buckets, le: float) -> float:
    """Cumulative count of observations <= ``le`` known from ``buckets``: the count at
    its largest bound not above ``le`` (a lower bound when the layouts differ)."""
    count = 0.0
    for bound, value in buckets:
        if bound > le:
            break
        count = value
    return count


def total(samples: Iterable[Sample]) -> Sample:
    """The sum of several processes' or pods' samples (one version). Histograms with
    different bucket bounds are added on the union of the bounds, each counting what it
    knows to be at or below a bound."""
    items = list(samples)
    bounds = sorted({le for s in items for le, _ in s.buckets})
    return Sample(
        requests=sum(s.requests for s in items),
        errors=sum(s.errors for s in items),
        buckets=tuple((le, sum(_count_at(s.buckets, le) for s in items)) for le in bounds),
    )


def since(after: Sample, before: Sample) -> Sample:
    """What one process counted from ``before`` to ``after``. A counter that went down (or
    a histogram whose bounds changed) means the process restarted in between: its counts
    since the restart are ``after`` itself, counted from zero (what it answered before the
    restart and after ``before`` is lost, as in Prometheus' ``increase``)."""
    if not before.buckets and before.requests == 0 and before.errors == 0:
        return after
    restarted = (
        after.requests < before.requests
        or after.errors < before.errors
        or (bool(before.buckets)
            and [le for le, _ in after.buckets] != [le for le, _ in before.buckets])
        or any(a < b for (_, a), (_, b) in zip(after.buckets, before.buckets, strict=False))
    )
    if restarted:
        return after
    return Sample(
        requests=after.requests - before.requests,
        errors=after.errors - before.errors,
        buckets=tuple((le, count - _count_at(before.buckets, le))
                      for le, count in after.buckets),
    )


def delta(after: Mapping[str, Sample], before: Mapping[str, Sample]) -> Sample:
    """One version's increase between two scrapes, from each process's or pod's sample by
    its key (a pod name, a port): per key first, then the sum. A key new in ``after``
    counts from zero; a key gone from ``after`` adds nothing (its process is gone)."""
    return total(since(sample, before.get(key, Sample())) for key, sample in after.items())


def quantile(q: float, sample: Sample) -> float | None:
    """The ``q`` quantile (0 <= q <= 1) of the latency histogram, in seconds, as
    Prometheus' ``histogram_quantile`` estimates it for a classic histogram
    (https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile):
    linear interpolation inside the bucket the rank falls in, the lowest bucket starting
    at 0 (or its own bound when that is <= 0); in the +Inf bucket, the highest finite
    bound; counts that go down are raised to the previous bucket's. None (Prometheus:
    NaN) without observations, with fewer than two buckets or without +Inf."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a quantile is between 0 and 1, not {q}")
    buckets = list(sample.buckets)
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return None
    highest = 0.0
    for i, (le, count) in enumerate(buckets):  # Prometheus' ensureMonotonic
        highest = max(highest, count)
        buckets[i] = (le, highest)
    observations = buckets[-1][1]
    if observations <= 0:
        return None
    rank = q * observations
    index = next(i for i, (_, count) in enumerate(buckets) if count >= rank)
    if index == len(buckets) - 1:
        return buckets[-2][0]
    end, count = buckets[index]
    if index == 0:
        if end <= 0:
            return end
        start, below = 0.0, 0.0
    else:
        start, below = buckets[index - 1]
    return start + (end - start) * (rank - below) / (count - below)


def _beyond_histogram(q: float, sample: Sample) -> bool:
    """Whether the ``q`` quantile lies in the +Inf bucket (the estimate is a lower bound)."""
    if len(sample.buckets) < 2:
        return False
    return max(count for _, count in sample.buckets[:-1]) < q * sample.buckets[-1][1]


@dataclass(frozen=True)
class Policy:
    """How a canary rollout goes: the new version's share at each step (percent,
    increasing, the last 100), the wait before each judgement, the limits, the minimum of
    requests a step needs for a verdict and what happens without them. The constructor
    refuses nonsense with a ValueError that says what to give instead."""

    steps: tuple[int, ...] = (10, 50, 100)
    interval_seconds: int = 120
    max_error_rate: float = 0.01
    max_p99_ms: float | None = None
    min_requests: int = 20
    no_traffic: NoTraffic = "promote"

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))  # a list from JSON is fine
        _check_steps(self.steps)
        if not _is_int(self.interval_seconds) or self.interval_seconds < 1:
            raise ValueError(f"canary interval must be a whole number of seconds, at least "
                             f"1 (not {self.interval_seconds!r}): Step Functions waits "
                             "whole seconds")
        if self.interval_seconds * len(self.steps) > MAX_CANARY_SECONDS:
            raise ValueError(f"{len(self.steps)} canary steps of {self.interval_seconds} s "
                             "take longer than a deployment may run its canary (24 h in "
                             "all): use fewer steps or a shorter interval")
        if not _is_number(self.max_error_rate) or not 0 <= self.max_error_rate <= 1:
            raise ValueError(f"max error rate is a fraction between 0 and 1 (0.05 for 5%), "
                             f"not {self.max_error_rate!r}")
        if self.max_p99_ms is not None and (
                not _is_number(self.max_p99_ms) or not 0 < self.max_p99_ms < MEASURED_UP_TO_MS):
            raise ValueError(f"max p99 must be more than 0 ms and less than "
                             f"{MEASURED_UP_TO_MS:g} ms, the highest latency the inference "
                             f"service measures (not {self.max_p99_ms!r}); leave it unset "
                             "to judge errors only")
        if not _is_int(self.min_requests) or self.min_requests < 1:
            raise ValueError(f"minimum requests per canary step must be a whole number, at "
                             f"least 1 (not {self.min_requests!r})")
        if self.no_traffic not in NO_TRAFFIC:
            raise ValueError(f"what to do without traffic is 'promote' or 'rollback', not "
                             f"{self.no_traffic!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_steps(steps: Sequence[object]) -> None:
    example = "e.g. 10,50,100"
    if not steps:
        raise ValueError(f"canary steps are missing: give the new version's share at each "
                         f"step in percent, {example}")
    shares: list[int] = []
    for share in steps:
        if not isinstance(share, int) or isinstance(share, bool) or not 1 <= share <= 100:
            raise ValueError(f"a canary step is a whole percent from 1 to 100, not {share!r} "
                             f"({example})")
        if shares and share <= shares[-1]:
            raise ValueError(f"canary steps must increase, but {share} comes after "
                             f"{shares[-1]} ({example})")
        shares.append(share)
    if shares[-1] != 100:
        raise ValueError(f"the last canary step must be 100 (all traffic), not {shares[-1]} "
                         f"({example})")


@dataclass(frozen=True)
class Verdict:
    """What :func:`judge` decided about a step: ``action``, one sentence of ``reason`` and
    the ``numbers`` behind it (JSON-ready, for the status and the CanaryFailed document)."""

    action: Action
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "numbers": self.numbers}


def _numbers(sample: Sample) -> dict[str, Any]:
    requests = round(sample.requests)
    p99 = quantile(0.99, sample)
    return {
        "requests": requests,
        "errors": round(sample.errors),
        "error_rate": sample.errors / sample.requests if sample.requests > 0 else None,
        "p99_ms": p99 * 1000 if p99 is not None else None,
        # the p99 lies above the highest finite bucket: p99_ms is a lower bound
        "p99_above_histogram": _beyond_histogram(0.99, sample),
    }


def _percent(rate: float) -> str:
    return f"{rate * 100:.3g}%"


def judge(policy: Policy, step: int, new: Sample, old: Sample) -> Verdict:
    """The verdict on step ``step`` (0-based index into ``policy.steps``), from the new and
    the old version's increases over the step's interval (see the module's docstring for
    the rules)."""
    if not _is_int(step) or not 0 <= step < len(policy.steps):
        raise ValueError(f"step {step!r} is not one of the policy's "
                         f"{len(policy.steps)} steps (0-based)")
    share = policy.steps[step]
    last = step == len(policy.steps) - 1
    numbers: dict[str, Any] = {
        "step": step + 1, "steps": len(policy.steps), "share": share,
        "min_requests": policy.min_requests, "max_error_rate": policy.max_error_rate,
        "max_p99_ms": policy.max_p99_ms, "new": _numbers(new), "old": _numbers(old),
    }
    onward: Action = "promote" if last else "next"
    where = ("promoting it" if last
             else f"moving on to {policy.steps[step + 1]}%")

    def verdict(action: Action, reason: str) -> Verdict:
        return Verdict(action=action, reason=reason, numbers=numbers)

    requests, errors = new.requests, new.errors
    at_share = f"at {share}% of the traffic"
    if requests < policy.min_requests and errors > policy.max_error_rate * policy.min_requests:
        return verdict("rollback", (
            f"The new version answered {round(errors)} of its {round(requests)} requests "
            f"{at_share} with 5xx: even had the {policy.min_requests - round(requests)} "
            f"more requests a verdict needs all succeeded, its error rate would be "
            f"{_percent(errors / policy.min_requests)}, over the limit of "
            f"{_percent(policy.max_error_rate)}."))
    if requests < policy.min_requests:
        if policy.no_traffic == "rollback":
            return verdict("rollback", (
                f"The new version answered only {round(requests)} requests {at_share}, fewer "
                f"than the {policy.min_requests} a verdict needs, and the no-traffic policy "
                f"is rollback."))
        return verdict(onward, (
            f"The new version answered only {round(requests)} requests {at_share}, fewer "
            f"than the {policy.min_requests} a verdict needs; the no-traffic policy is "
            f"promote, so {where} without a verdict."))
    rate = errors / requests
    if rate > policy.max_error_rate:
        return verdict("rollback", (
            f"The new version's error rate {at_share} was {_percent(rate)} "
            f"({round(errors)} 5xx of {round(requests)} requests), over the limit of "
            f"{_percent(policy.max_error_rate)}."))
    if policy.max_p99_ms is not None:
        p99 = quantile(0.99, new)
        if p99 is not None and _beyond_histogram(0.99, new):
            top_ms = p99 * 1000
            return verdict("rollback", (
                f"The new version's p99 latency {at_share} was above {top_ms:g} ms, the "
                "highest latency its histogram measures, " + (
                    f"over the limit of {policy.max_p99_ms:g} ms."
                    if policy.max_p99_ms < top_ms else
                    f"so the limit of {policy.max_p99_ms:g} ms cannot be shown to hold.")))
        if p99 is not None and p99 * 1000 > policy.max_p99_ms:
            return verdict("rollback", (
                f"The new version's p99 latency {at_share} was {p99 * 1000:.4g} ms, over "
                f"the limit of {policy.max_p99_ms:g} ms."))
    judged = f"error rate {_percent(rate)}"
    if policy.max_p99_ms is not None and numbers["new"]["p99_ms"] is not None:
        judged += f", p99 {numbers['new']['p99_ms']:.4g} ms"
    return verdict(onward, (
        f"The new version held its limits {at_share} over {round(requests)} requests "
        f"({judged}): {where}."))
