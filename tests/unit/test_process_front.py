"""The process driver behind the model's front: promotion points the front at the new
version, then drains the old one before stopping it; records of before the front read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainship.cluster import process
from trainship.cluster.handles import ProcessHandle
from trainship.cluster.process import ProcessDriver


def record(version: str, port: int, state: str = "serving") -> ProcessHandle:
    return {"model_name": "iris", "serving_name": "iris", "version": version,
            "image_uri": "bundle:sha256:0", "deployment_id": f"d-{version}", "port": port,
            "url": "http://127.0.0.1:9000", "test_url": f"http://127.0.0.1:{port}",
            "state": state, "pid": 100 + int(version), "log": f"v{version}.log",
            "requirements": []}  # type: ignore[typeddict-item]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """What the driver asks of the front and of the processes, in order."""
    seen: list[tuple[str, int]] = []
    monkeypatch.setattr(process.front, "point", lambda d, port: seen.append(("point", port)))
    monkeypatch.setattr(process.front, "drain",
                        lambda d, port: seen.append(("drain", port)) or 0)
    monkeypatch.setattr(process, "stop_pid", lambda pid: seen.append(("stop", pid)))
    return seen


def test_promotion_points_the_front_then_drains_then_stops(
        tmp_path: Path, calls: list[tuple[str, int]]) -> None:
    driver = ProcessDriver(tmp_path)
    (tmp_path / "iris").mkdir()
    old, new = record("1", 8001), record("2", 8002, "starting")
    for each in (old, new):
        driver._save(each)
    assert driver.promote(new) is None
    assert calls == [("point", 8002), ("drain", 8001), ("stop", 101)]
    assert [(r["version"], r["state"]) for r in driver.records("iris")] == [("2", "serving")]


def test_a_superseded_version_is_stopped_without_touching_the_front(
        tmp_path: Path, calls: list[tuple[str, int]]) -> None:
    driver = ProcessDriver(tmp_path)
    (tmp_path / "iris").mkdir()
    driver._save(record("3", 8003))
    late = record("2", 8002, "starting")
    driver._save(late)
    assert driver.promote(late) == "3"
    assert calls == [("stop", 102)]


def test_a_record_from_before_the_front_reads_with_its_own_url_as_test_url(
        tmp_path: Path) -> None:
    old = dict(record("1", 8001))
    del old["test_url"]
    old["url"] = "http://127.0.0.1:8001"
    (tmp_path / "iris").mkdir()
    (tmp_path / "iris" / "v1.json").write_text(json.dumps(old))
    [read] = ProcessDriver(tmp_path).records("iris")
    assert read["test_url"] == read["url"] == "http://127.0.0.1:8001"


def test_a_rollback_makes_the_lower_version_live_and_retires_the_higher(
        tmp_path: Path, calls: list[tuple[str, int]]) -> None:
    driver = ProcessDriver(tmp_path)
    (tmp_path / "iris").mkdir()
    driver._save(record("3", 8003))
    # v1 served before, was retired (its record removed) and is applied again: a new record
    back = record("1", 8011, "starting")
    driver._save(back)
    assert driver.promote(back, replace_higher=True) is None
    assert calls == [("point", 8011), ("drain", 8003), ("stop", 103)]
    assert [(r["version"], r["state"], r["port"]) for r in driver.records("iris")] == [
        ("1", "serving", 8011)]
    # a normal deployment keeps today's rule: a lower version does not replace a higher
    calls.clear()
    late = record("0", 8010, "starting")
    driver._save(late)
    assert driver.promote(late) == "1"
    assert calls == [("stop", 100)]


def test_a_rollback_over_an_old_record_of_the_same_version_replaces_it(
        tmp_path: Path, calls: list[tuple[str, int]]) -> None:
    driver = ProcessDriver(tmp_path)
    (tmp_path / "iris").mkdir()
    driver._save(record("2", 8002))
    driver._save(record("1", 8001, "starting"))  # a failed earlier attempt left its record
    again = record("1", 8021, "starting")
    driver._save(again)  # DeployModel writes v1.json again
    assert driver.promote(again, replace_higher=True) is None
    assert calls == [("point", 8021), ("drain", 8002), ("stop", 102)]
    assert [(r["version"], r["port"]) for r in driver.records("iris")] == [("1", 8021)]
