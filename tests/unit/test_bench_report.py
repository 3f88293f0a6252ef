"""`make bench` rewrites docs/benchmarks.md's measured part and keeps its hand-written
part (the AWS section) as it is; its pure parts: the peers' order per round, the medians
over the rounds, the rows per predict call over several runs, the bound lines."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.serving_bench import (
    HAND_WRITTEN,
    Bound,
    Bounds,
    Load,
    bound_lines,
    hand_written,
    median_load,
    rotated,
    rows_per_call,
    write_report,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_hand_written_part_is_kept_from_its_heading_on(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    assert hand_written(report) == ""  # no report yet
    report.write_text(f"# Benchmarks\n\n| measured | 1 |\n\n{HAND_WRITTEN}\n\nby hand\n")
    assert hand_written(report) == f"{HAND_WRITTEN}\n\nby hand\n"
    report.write_text("# Benchmarks\n\nno hand-written part\n")
    assert hand_written(report) == ""


def test_the_docs_have_the_hand_written_part() -> None:
    assert HAND_WRITTEN in hand_written(REPO / "docs" / "benchmarks.md")


def test_rotated_gives_each_peer_each_place_once_over_as_many_rounds() -> None:
    names = ["mlflow", "trainship+token", "trainship"]
    assert rotated(names, 0) == names
    assert rotated(names, 1) == ["trainship+token", "trainship", "mlflow"]
    assert rotated(names, 2) == ["trainship", "mlflow", "trainship+token"]
    assert rotated(names, 3) == names  # wraps around
    orders = [rotated(names, r) for r in range(len(names))]
    for place in range(len(names)):
        assert sorted(order[place] for order in orders) == sorted(names)
    assert names == ["mlflow", "trainship+token", "trainship"]  # not changed in place
    assert rotated([], 2) == []


def test_median_load_takes_each_metrics_median_and_sums_the_counts() -> None:
    runs = [Load(rps=50.0, p50_ms=10.0, p99_ms=90.0, requests=500, errors=0),
            Load(rps=80.0, p50_ms=30.0, p99_ms=20.0, requests=800, errors=2),
            Load(rps=60.0, p50_ms=20.0, p99_ms=40.0, requests=600, errors=1)]
    # each metric's own median, not the median run's (that would be p99 90 or 20)
    assert median_load(runs) == Load(rps=60.0, p50_ms=20.0, p99_ms=40.0, requests=1900,
                                     errors=3)
    # an even number of rounds: the mean of the middle two
    two = median_load(runs[:2])
    assert (two.rps, two.p50_ms, two.p99_ms) == (65.0, 20.0, 55.0)
    assert median_load(runs[:1]) == runs[0]
    with pytest.raises(ValueError, match="no runs"):
        median_load([])


def test_rows_per_call_is_all_rows_over_all_calls() -> None:
    # not the mean of each run's ratio (which would be (2 + 8) / 2 = 5)
    assert rows_per_call([(200.0, 100.0), (800.0, 100.0)]) == 5.0
    assert rows_per_call([(100.0, 50.0), (700.0, 50.0), (0.0, 0.0)]) == 8.0
    assert rows_per_call([(90.0, 10.0), (10.0, 90.0)]) == 1.0
    assert rows_per_call([]) == 1.0
    assert rows_per_call([(0.0, 0.0)]) == 1.0


def test_bound_lines() -> None:
    p50, cold = bound_lines(mlflow_p50_ms=13.572, predict_1_ms=5.2, mlflow_cold_s=6.87,
                            floor_s=2.1)
    assert p50 == "  p50 1-conn bound: 1-row predict 5.20 ms; MLflow p50 / that = 2.61x"
    assert cold == "  coldstart floor: import + load 2.10 s; MLflow cold start / that = 3.27x"


def test_the_report_states_the_method_and_the_bounds(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    report.write_text(f"# old\n\n{HAND_WRITTEN}\n\nby hand\n")
    cell = Load(rps=100.0, p50_ms=10.0, p99_ms=20.0, requests=1000, errors=0)
    cells = {key: cell for key in ("1c/1r", "1c/100r", "16c/1r", "16c/100r")}
    args = argparse.Namespace(seconds=5, rounds=3, coldstart_runs=3, soak_seconds=60)
    write_report(report, {"mlflow": cells, "trainship": cells}, {"mlflow": 6.0, "trainship": 3.0},
                 None, args, {}, "serving rps_x=1.00", Bound(6.0, 4.0, 2, 3000.0), 1.0,
                 bounds=Bounds(predict_1_ms=4.0, floor_s=2.0))
    text = report.read_text()
    assert "3 rounds; in each, every cell gets one wrk run of 5 s per server" in text
    assert "each server started 3 times" in text
    assert "  p50 1-conn bound: 1-row predict 4.00 ms; MLflow p50 / that = 2.50x" in text
    assert "  coldstart floor: import + load 2.00 s; MLflow cold start / that = 3.00x" in text
    assert text.endswith(f"{HAND_WRITTEN}\n\nby hand\n")
