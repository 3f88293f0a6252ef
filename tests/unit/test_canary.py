"""Canary judging (issue 15): reading /metrics, increases, Prometheus' histogram_quantile,
the policy's checks and the verdicts.

The /metrics texts come from the inference service's own metrics (trainship.serving.metrics)
in prometheus_client's multiprocess mode: a subprocess makes a server's directory, forks
workers that each answer some requests, and prints what a scrape would read."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trainship import canary
from trainship.canary import Policy, Sample, judge, parse, quantile, since, total
from trainship.serving import metrics

REPO = Path(__file__).resolve().parents[2]
BOUNDS = (*metrics.LATENCY_BUCKETS, math.inf)
MARK = "# ---- scrape ----"

# One server: its directory, then per phase, workers forked to answer their requests
# (route, status, seconds) and exit; after each phase, a scrape of every worker's files.
SERVER = """
import json, os, sys
from pathlib import Path
from trainship.serving import metrics
spec, mark = json.loads(sys.argv[1]), sys.argv[3]
directory = metrics.create_directory(Path(sys.argv[2]))
for phase in spec:
    for answers in phase:
        pid = os.fork()
        if pid == 0:
            worker = metrics.Metrics(directory)
            for route, status, seconds in answers:
                worker.observe(route, status, seconds)
            os._exit(0)
        os.waitpid(pid, 0)
    scraper = metrics.Metrics(directory, {"model_name": "m", "model_version": "1"})
    sys.stdout.write(scraper.render().decode() + mark + "\\n")
"""

Answers = list[tuple[str, int, float]]


def scrapes(tmp_path: Path, *phases: list[Answers]) -> list[str]:
    """The /metrics text after each phase of one real server (its workers per phase)."""
    base = tmp_path / f"server-{len(list(tmp_path.iterdir()))}"
    base.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", SERVER, json.dumps(phases), str(base), MARK],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, cwd=REPO)
    assert result.returncode == 0, result.stderr
    texts = result.stdout.split(MARK + "\n")
    assert texts[-1] == "" and len(texts) == len(phases) + 1, result.stdout
    return texts[:-1]


def invocations(count: int, status: int = 200, seconds: float = 0.02) -> Answers:
    return [("/invocations", status, seconds)] * count


def expected_buckets(latencies: list[float]) -> tuple[tuple[float, float], ...]:
    return tuple((le, float(sum(1 for s in latencies if s <= le))) for le in BOUNDS)


# -- what the module assumes about the service -------------------------------------------


def test_the_names_and_the_highest_bucket_are_the_services() -> None:
    assert canary.INVOCATIONS == metrics.INVOCATIONS
    assert canary.MEASURED_UP_TO_MS == metrics.LATENCY_BUCKETS[-1] * 1000


# -- parse ---------------------------------------------------------------------------------


def test_parse_sums_the_workers_and_counts_only_5xx_of_invocations(tmp_path: Path) -> None:
    worker_1 = [*invocations(3, 200, 0.003), ("/invocations", 400, 0.001),
                ("/invocations", 500, 0.3), ("/ping", 200, 0.001), ("other", 503, 0.001)]
    worker_2 = [*invocations(2, 200, 0.07), ("/invocations", 401, 0.002),
                ("/invocations", 503, 7.0), ("/metrics", 200, 0.001)]
    (text,) = scrapes(tmp_path, [worker_1, worker_2])

    sample = parse(text)

    latencies = [0.003] * 3 + [0.001, 0.3] + [0.07] * 2 + [0.002, 7.0]
    # 9 answers to /invocations; the 4xx are answers but not errors; /ping, /metrics and
    # a 503 on another path are not the model's
    assert sample == Sample(requests=9.0, errors=2.0, buckets=expected_buckets(latencies))


def test_a_fresh_server_parses_to_zeros(tmp_path: Path) -> None:
    (text,) = scrapes(tmp_path, [[]])
    sample = parse(text)
    assert sample == Sample(requests=0.0, errors=0.0,
                            buckets=tuple((le, 0.0) for le in BOUNDS))
    assert quantile(0.99, sample) is None


@pytest.mark.parametrize("text", [
    "up 1\n",  # Prometheus text, but not a trainship model's
    "<html><body>502 Bad Gateway</body></html>",
    'trainship_request_seconds_bucket{le="0.1" 3\n',
])
def test_parse_refuses_what_is_not_a_trainship_service(text: str) -> None:
    with pytest.raises(ValueError, match="not"):
        parse(text)


def test_parse_refuses_a_histogram_without_inf() -> None:
    text = ("# TYPE trainship_request_seconds histogram\n"
            'trainship_request_seconds_bucket{le="0.1"} 3\n'
            "trainship_request_seconds_count 3\n")
    with pytest.raises(ValueError, match=r"\+Inf"):
        parse(text)


# -- quantile: Prometheus' histogram_quantile ---------------------------------------------


def hist(*pairs: tuple[float, float]) -> Sample:
    return Sample(requests=pairs[-1][1], buckets=tuple(pairs))


def test_quantile_interpolates_like_promql() -> None:
    # the example ClickHouse documents as matching PromQL's histogram_quantile: 0.35
    sample = hist((0.0, 6), (0.5, 11), (1.0, 14), (math.inf, 19))
    assert quantile(0.5, sample) == pytest.approx(0.35)


def test_quantile_inside_a_bucket_the_lowest_starting_at_zero() -> None:
    sample = hist((0.1, 40), (0.2, 80), (0.4, 100), (math.inf, 100))
    assert quantile(0.2, sample) == pytest.approx(0.05)   # 20 of the lowest 40 in 0..0.1
    assert quantile(0.6, sample) == pytest.approx(0.15)   # 20 of 40 in 0.1..0.2
    assert quantile(0.9, sample) == pytest.approx(0.3)    # 10 of 20 in 0.2..0.4
    assert quantile(0.8, sample) == pytest.approx(0.2)    # exactly a bound
    assert quantile(1.0, sample) == pytest.approx(0.4)
    assert quantile(0.0, sample) == pytest.approx(0.0)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    sample = hist((0.1, 50), (0.5, 90), (math.inf, 100))
    assert quantile(0.99, sample) == 0.5
    assert canary._beyond_histogram(0.99, sample)
    assert not canary._beyond_histogram(0.9, sample)


def test_quantile_in_a_lowest_bucket_at_or_below_zero_is_its_bound() -> None:
    assert quantile(0.1, hist((-1.0, 10), (1.0, 20), (math.inf, 20))) == -1.0


def test_quantile_without_an_answer_is_none() -> None:
    assert quantile(0.5, hist((0.1, 0), (math.inf, 0))) is None       # no observations
    assert quantile(0.5, Sample()) is None                              # no histogram
    assert quantile(0.5, hist((math.inf, 5))) is None                  # one bucket
    assert quantile(0.5, hist((0.1, 3), (1.0, 5))) is None             # no +Inf


def test_quantile_raises_counts_that_go_down_like_promql() -> None:
    # 0.2's count (30) below 0.1's (40): taken as 40, so the median is in 0..0.1
    sample = hist((0.1, 40), (0.2, 30), (0.4, 80), (math.inf, 80))
    assert quantile(0.5, sample) == pytest.approx(0.1)
    assert quantile(0.75, sample) == pytest.approx(0.2 + 0.2 * (60 - 40) / 40)


@pytest.mark.parametrize("q", [-0.1, 1.5, math.nan])
def test_quantile_refuses_a_q_outside_0_1(q: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        quantile(q, hist((0.1, 1), (math.inf, 1)))


def test_p99_of_a_real_scrape(tmp_path: Path) -> None:
    # 98 fast answers and 2 at 0.3 s: the 99th of 100 is in the 0.25..0.5 bucket
    (text,) = scrapes(tmp_path, [invocations(98, seconds=0.004) + invocations(2, seconds=0.3)])
    assert quantile(0.99, parse(text)) == pytest.approx(0.25 + 0.25 * (99 - 98) / 2)
    assert quantile(0.5, parse(text)) == pytest.approx(0.005 * 50 / 98)


# -- total, since, delta ------------------------------------------------------------------


def test_since_subtracts_on_one_server_and_counts_from_zero_after_a_restart(
        tmp_path: Path) -> None:
    before, after = scrapes(tmp_path, [invocations(10, 200, 0.02)],
                            [invocations(4, 500, 0.2), invocations(6, 200, 0.002)])
    step = since(parse(after), parse(before))
    assert step == Sample(requests=10.0, errors=4.0,
                          buckets=expected_buckets([0.2] * 4 + [0.002] * 6))

    (restarted,) = scrapes(tmp_path, [invocations(3, 503, 0.02)])  # a new server: fewer
    assert since(parse(restarted), parse(before)) == parse(restarted)


def test_since_sees_a_restart_in_any_counter() -> None:
    before = Sample(10, 1, ((0.1, 8), (math.inf, 10)))
    assert since(Sample(12, 0, ((0.1, 9), (math.inf, 12))), before).errors == 0
    assert since(Sample(12, 2, ((0.1, 7), (math.inf, 12))), before).requests == 12
    other_bounds = Sample(12, 2, ((0.5, 12), (math.inf, 12)))
    assert since(other_bounds, before) == other_bounds
    assert since(Sample(12, 2, ((0.1, 9), (math.inf, 12))), before) == Sample(
        2, 1, ((0.1, 1), (math.inf, 2)))


def test_total_adds_processes_even_with_different_bounds() -> None:
    a = Sample(4, 1, ((0.1, 3), (1.0, 4), (math.inf, 4)))
    b = Sample(6, 2, ((0.5, 5), (math.inf, 6)))
    assert total([a, b]) == Sample(10, 3, ((0.1, 3), (0.5, 3 + 5), (1.0, 4 + 5),
                                           (math.inf, 10)))
    assert total([]) == Sample()


def test_delta_takes_each_pods_increase_before_the_sum(tmp_path: Path) -> None:
    before_a, after_a = scrapes(tmp_path, [invocations(50)], [invocations(5)])
    (before_b,) = scrapes(tmp_path, [invocations(40)])
    (after_b,) = scrapes(tmp_path, [invocations(7, 500)])  # pod b restarted: 7 since
    (after_c,) = scrapes(tmp_path, [invocations(3)])       # pod c is new
    (before_d,) = scrapes(tmp_path, [invocations(9)])      # pod d is gone
    before = {"a": parse(before_a), "b": parse(before_b), "d": parse(before_d)}
    after = {"a": parse(after_a), "b": parse(after_b), "c": parse(after_c)}

    step = canary.delta(after, before)

    assert (step.requests, step.errors) == (5 + 7 + 3, 7)
    assert step.buckets[-1] == (math.inf, 15)
    # the sum first would hide b's restart: 65 after, 99 before
    summed = since(total(after.values()), total(before.values()))
    assert summed.requests != step.requests


# -- Policy -----------------------------------------------------------------------------


def test_the_default_policy_and_a_list_of_steps() -> None:
    assert Policy().steps == (10, 50, 100)
    assert Policy(steps=[25, 100]).steps == (25, 100)  # type: ignore[arg-type]
    assert Policy(steps=(100,), max_error_rate=0, max_p99_ms=250).max_p99_ms == 250


@pytest.mark.parametrize(("fields", "message"), [
    ({"steps": ()}, "steps are missing"),
    ({"steps": (10, 50)}, "last canary step must be 100"),
    ({"steps": (50, 10, 100)}, "must increase, but 10 comes after 50"),
    ({"steps": (10, 10, 100)}, "must increase"),
    ({"steps": (0, 100)}, "from 1 to 100"),
    ({"steps": (10, 150)}, "from 1 to 100"),
    ({"steps": (12.5, 100)}, "whole percent"),
    ({"steps": (True, 100)}, "whole percent"),
    ({"interval_seconds": 0}, "at least 1"),
    ({"interval_seconds": 2.5}, "whole number of seconds"),
    ({"interval_seconds": 200 * 24 * 3600}, "longer than a deployment may run"),
    ({"max_error_rate": 5}, "0.05 for 5%"),
    ({"max_error_rate": -0.1}, "between 0 and 1"),
    ({"max_error_rate": math.nan}, "between 0 and 1"),
    ({"max_p99_ms": 0}, "more than 0 ms"),
    ({"max_p99_ms": 5000}, "less than 5000 ms"),
    ({"max_p99_ms": math.inf}, "less than 5000 ms"),
    ({"min_requests": 0}, "at least 1"),
    ({"min_requests": 2.5}, "whole number"),
    ({"no_traffic": "wait"}, "'promote' or 'rollback'"),
])
def test_the_policy_refuses_nonsense(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Policy(**fields)


# -- judge ------------------------------------------------------------------------------

POLICY = Policy(steps=(10, 50, 100), max_error_rate=0.05, max_p99_ms=400, min_requests=20)
HEALTHY_OLD = Sample(900, 1, ((0.05, 880), (0.1, 899), (0.5, 900), (math.inf, 900)))


def fast(requests: int, errors: int = 0) -> Sample:
    """``requests`` answers all within 50 ms, ``errors`` of them 5xx."""
    return Sample(requests, errors, ((0.05, requests), (0.5, requests),
                                     (math.inf, requests)))


def test_a_healthy_step_moves_on_and_the_last_promotes() -> None:
    verdict = judge(POLICY, 0, fast(100, 2), HEALTHY_OLD)
    assert verdict.action == "next"
    assert "moving on to 50%" in verdict.reason
    assert judge(POLICY, 1, fast(100), HEALTHY_OLD).action == "next"
    last = judge(POLICY, 2, fast(100), Sample())
    assert last.action == "promote" and "promoting" in last.reason


def test_the_error_rate_over_the_limit_rolls_back() -> None:
    verdict = judge(POLICY, 1, fast(100, 6), HEALTHY_OLD)
    assert verdict.action == "rollback"
    assert "6%" in verdict.reason and "5%" in verdict.reason
    assert judge(POLICY, 1, fast(100, 5), HEALTHY_OLD).action == "next"  # at the limit


def test_decisive_errors_roll_back_even_with_too_few_requests() -> None:
    # 5 of 5 failed: even 15 more successes would leave 25% > 5%
    verdict = judge(POLICY, 0, fast(5, 5), HEALTHY_OLD)
    assert verdict.action == "rollback"
    assert "15 more requests" in verdict.reason
    # 1 of 5 failed: 1/20 = 5% is not over; too few to judge otherwise
    assert judge(POLICY, 0, fast(5, 1), HEALTHY_OLD).action == "next"


@pytest.mark.parametrize(("no_traffic", "step", "action"), [
    ("promote", 0, "next"), ("promote", 2, "promote"),
    ("rollback", 0, "rollback"), ("rollback", 2, "rollback"),
])
def test_too_few_requests_follow_the_no_traffic_policy(no_traffic: canary.NoTraffic,
                                                       step: int, action: str) -> None:
    policy = Policy(min_requests=20, no_traffic=no_traffic, max_p99_ms=1)
    # slow, but latency is not judged on 19 requests
    slow = Sample(19, 0, ((0.5, 0), (1.0, 19), (math.inf, 19)))
    verdict = judge(policy, step, slow, HEALTHY_OLD)
    assert verdict.action == action
    assert "fewer than the 20 a verdict needs" in verdict.reason
    if no_traffic == "promote":
        assert "without a verdict" in verdict.reason


def test_p99_over_the_limit_rolls_back() -> None:
    # 98 fast, 2 between 0.25 and 0.5 s: p99 = 375 ms; 100 slow ones: 497.5 ms
    mostly_fast = Sample(100, 0, ((0.05, 98), (0.25, 98), (0.5, 100), (math.inf, 100)))
    assert judge(POLICY, 0, mostly_fast, HEALTHY_OLD).action == "next"
    slow = Sample(100, 0, ((0.05, 0), (0.25, 0), (0.5, 100), (math.inf, 100)))
    verdict = judge(POLICY, 0, slow, HEALTHY_OLD)
    assert verdict.action == "rollback"
    assert "497.5 ms" in verdict.reason and "400 ms" in verdict.reason
    assert judge(Policy(max_p99_ms=None), 0, slow, HEALTHY_OLD).action == "next"


def test_a_p99_above_the_histogram_fails_closed() -> None:
    # a histogram that stops at 1 s (another image's buckets), p99 above it
    beyond = Sample(100, 0, ((0.5, 50), (1.0, 90), (math.inf, 100)))
    verdict = judge(Policy(max_p99_ms=2000), 0, beyond, HEALTHY_OLD)
    assert verdict.action == "rollback"
    assert "cannot be shown to hold" in verdict.reason
    assert verdict.numbers["new"]["p99_above_histogram"] is True
    under = judge(Policy(max_p99_ms=800), 0, beyond, HEALTHY_OLD)
    assert under.action == "rollback" and "above 1000 ms" in under.reason


@pytest.mark.parametrize("new", [fast(100, 2), fast(100, 9), fast(3, 3), fast(5),
                                 Sample(100, 0, ((0.5, 0), (1.0, 100), (math.inf, 100)))])
def test_the_old_versions_numbers_never_decide(new: Sample) -> None:
    verdicts = {judge(POLICY, 1, new, old).action
                for old in (HEALTHY_OLD, Sample(), fast(100, 100), fast(1000, 0))}
    assert len(verdicts) == 1


def test_the_numbers_of_a_verdict(tmp_path: Path) -> None:
    # v2 fails half of its predictions (the e2e case), on real scrapes
    new_before, new_after = scrapes(
        tmp_path, [invocations(1)], [invocations(20, 500, 0.01) + invocations(20, 200, 0.01)])
    old_before, old_after = scrapes(tmp_path, [invocations(100)],
                                    [invocations(358) + invocations(2, 400)])
    new = since(parse(new_after), parse(new_before))
    old = since(parse(old_after), parse(old_before))

    verdict = judge(Policy(steps=(10, 100), max_error_rate=0.01), 0, new, old)

    assert verdict.action == "rollback"
    assert verdict.numbers == {
        "step": 1, "steps": 2, "share": 10, "min_requests": 20, "max_error_rate": 0.01,
        "max_p99_ms": None,
        "new": {"requests": 40, "errors": 20, "error_rate": 0.5,
                "p99_ms": pytest.approx(5 + 5 * 39.6 / 40),  # all at 10 ms
                "p99_above_histogram": False},
        "old": {"requests": 360, "errors": 0, "error_rate": 0.0,
                "p99_ms": pytest.approx(10 + 15 * 356.4 / 360),  # all at 20 ms
                "p99_above_histogram": False},
    }
    assert json.loads(json.dumps(verdict.to_dict()))["action"] == "rollback"
    assert "50%" in verdict.reason
    assert verdict.reason.endswith(".") and ". " not in verdict.reason  # one sentence


def test_no_requests_at_all_shows_none() -> None:
    verdict = judge(POLICY, 0, Sample(), Sample())
    assert verdict.numbers["new"] == {"requests": 0, "errors": 0, "error_rate": None,
                                      "p99_ms": None, "p99_above_histogram": False}


@pytest.mark.parametrize("step", [-1, 3, True])
def test_judge_refuses_a_step_the_policy_does_not_have(step: int) -> None:
    with pytest.raises(ValueError, match="not one of the policy's 3 steps"):
        judge(POLICY, step, fast(100), HEALTHY_OLD)
