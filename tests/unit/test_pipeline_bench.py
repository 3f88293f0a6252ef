"""bench/pipeline_bench.py's pure parts: the script's run time from the build log, the
wall time split by state, the builds' phases, the median run."""

from __future__ import annotations

import pytest

from bench.pipeline_bench import build_phases, median_run, script_seconds, state_breakdown

EPOCH = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def stamp(offset: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(EPOCH + offset, UTC).isoformat()


def test_script_seconds_is_the_runners_last_line() -> None:
    log = ("[trainship] script exited with 0 after 0.100 s\n"  # printed by the script
           "model logged\n"
           "[trainship] script exited with 0 after 5.432 s\n"
           "[Container] 2026/12/07 14:10:47.183678 Phase complete: BUILD State: SUCCEEDED\n")
    assert script_seconds(log) == 5.432


def test_script_seconds_without_the_line() -> None:
    with pytest.raises(ValueError, match="script exited"):
        script_seconds("[trainship] script exited with 1 after 2.0 s\n")


def test_state_breakdown_adds_up_to_the_wall_time() -> None:
    steps = [{"name": "ValidateRequest", "entered": stamp(0.5), "seconds": 0.1},
             {"name": "TrainModel", "entered": stamp(0.7), "seconds": 6.0},
             {"name": "WaitForRollout", "entered": stamp(7.0), "seconds": 1.0},
             {"name": "CheckRollout", "entered": stamp(8.0), "seconds": 0.1},
             {"name": "WaitForRollout", "entered": stamp(8.2), "seconds": 1.0},
             {"name": "PromoteModel", "entered": stamp(9.3), "seconds": 0.5}]
    parts = state_breakdown(steps, posted=EPOCH, answered=EPOCH + 10.0)
    assert list(parts) == ["Submit", "ValidateRequest", "TrainModel", "WaitForRollout",
                           "CheckRollout", "PromoteModel", "Observe"]
    assert parts["Submit"] == pytest.approx(0.5)
    assert parts["TrainModel"] == pytest.approx(6.3)
    assert parts["WaitForRollout"] == pytest.approx(2.1)  # both passes of the loop
    assert parts["PromoteModel"] == pytest.approx(0.5)
    assert parts["Observe"] == pytest.approx(0.2)
    assert sum(parts.values()) == pytest.approx(10.0, abs=0.01)


def test_state_breakdown_needs_steps() -> None:
    with pytest.raises(ValueError):
        state_breakdown([], posted=EPOCH, answered=EPOCH + 1)


def test_build_phases_from_the_container_lines() -> None:
    log = """\
[Container] 2026/12/07 14:10:47.000000 Running build trainship-train:x
[Container] 2026/12/07 14:10:47.000000 Entering phase INSTALL
[Container] 2026/12/07 14:10:47.000000 Running command python3 -c "import trainship"
[Container] 2026/12/07 14:10:47.250000 Phase complete: INSTALL State: SUCCEEDED
[Container] 2026/12/07 14:10:47.250000 Entering phase PRE_BUILD
[Container] 2026/12/07 14:10:47.250000 Running command export MLFLOW_RUN_ID=x
[Container] 2026/12/07 14:10:49.250000 Running command test -n "$MLFLOW_RUN_ID"
[Container] 2026/12/07 14:10:49.300000 Phase complete: PRE_BUILD State: SUCCEEDED
[Container] 2026/12/07 14:10:49.300000 Entering phase BUILD
[Container] 2026/12/07 14:10:49.300000 Running command python3 -m trainship.training run
output of the command
[Container] 2026/12/07 14:10:55.300000 Phase complete: BUILD State: SUCCEEDED
[Container] 2026/12/07 14:10:55.400000 Build SUCCEEDED
"""
    phases = build_phases(log)
    assert phases["INSTALL"] == pytest.approx(0.25)
    assert phases["PRE_BUILD"] == pytest.approx(2.05)
    assert phases["PRE_BUILD: export MLFLOW_RUN_ID=x"] == pytest.approx(2.0)
    assert phases["BUILD: python3 -m trainship.training run"] == pytest.approx(6.0)
    assert phases["BUILD"] == pytest.approx(6.0)


def test_median_run() -> None:
    runs = [{"overhead_s": 3.0, "n": 1}, {"overhead_s": 1.0, "n": 2},
            {"overhead_s": 2.0, "n": 3}]
    assert median_run(runs)["n"] == 3
    assert median_run(runs[:2])["n"] == 2  # the lower middle one
    with pytest.raises(ValueError):
        median_run([])
