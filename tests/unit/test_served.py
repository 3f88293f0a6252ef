"""The serving history on model-version tags (trainship.served), on a real MLflow registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trainship import served


@pytest.fixture()
def client(tmp_path: Path, registry_uri: str) -> Any:
    from mlflow import MlflowClient

    mlflow = MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)
    mlflow.create_registered_model("test_model")
    (tmp_path / "model").mkdir()
    for _ in range(3):
        mlflow.create_model_version("test_model", (tmp_path / "model").as_uri())
    return mlflow


T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def live(client: Any, version: str, at: datetime) -> None:
    served.mark_live(client, model_name="test_model", version=version,
                     image_uri=f"img:v{version}", inference_url="http://127.0.0.1:8080",
                     target="process", deployment_id=f"d{version}-{at.hour}", now=at)


def test_a_version_that_never_served_has_no_periods(client: Any) -> None:
    found = served.versions(client, "test_model")
    assert [v.version for v in found] == ["3", "2", "1"]
    assert not any(v.ever_served for v in found) and found[0].image_uri == ""


def test_going_live_closes_the_previous_period_and_a_rollback_opens_a_second(
        client: Any) -> None:
    live(client, "1", T0)
    live(client, "2", T0 + timedelta(hours=1))
    live(client, "1", T0 + timedelta(hours=2))  # a rollback to v1
    by_version = {v.version: v for v in served.versions(client, "test_model")}
    one, two = by_version["1"], by_version["2"]
    assert [(p["from"], p["to"]) for p in one.periods] == [
        ("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"), ("2026-12-01T12:00:00Z", None)]
    assert [(p["from"], p["to"]) for p in two.periods] == [
        ("2026-12-01T11:00:00Z", "2026-12-01T12:00:00Z")]
    assert one.image_uri == "img:v1" and one.promoted_by == "d1-12" and one.target == "process"
    assert not by_version["3"].ever_served


def test_marking_the_live_version_again_keeps_one_open_period(client: Any) -> None:
    live(client, "2", T0)
    live(client, "2", T0 + timedelta(hours=1))  # e.g. PromoteModel retried
    (two,) = [v for v in served.versions(client, "test_model") if v.version == "2"]
    assert [(p["from"], p["to"]) for p in two.periods] == [("2026-12-01T10:00:00Z", None)]


def test_retiring_all_closes_every_open_period(client: Any) -> None:
    live(client, "3", T0)
    served.retire_others(client, "test_model", keep=None, now=T0 + timedelta(hours=5))
    (three,) = [v for v in served.versions(client, "test_model") if v.version == "3"]
    assert three.periods[-1]["to"] == "2026-12-01T15:00:00Z"


def test_the_oldest_periods_are_dropped_to_fit_mlflows_tag_limit() -> None:
    periods: list[served.Period] = [
        {"from": f"2026-01-01T00:00:{i % 60:02d}Z", "to": "2026-01-02T00:00:00Z",
         "deployment_id": f"deployment-{i:04d}"} for i in range(200)]
    text = served._encode(periods)
    assert len(text) <= served.TAG_VALUE_LIMIT
    assert '"deployment-0199"' in text and '"deployment-0000"' not in text
