"""What serves, read from a real MLflow registry (sqlite): trainship.models behind GET /models
and GET /models/{model_name}."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trainship import models, served
from trainship.errors import ModelNotFound, RegistryUnavailable
from trainship.registry import SERVING_NAME_TAG

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
ALIAS = "live"


@pytest.fixture()
def uri(tmp_path: Path, registry_uri: str) -> str:
    (tmp_path / "model").mkdir()
    return registry_uri


@pytest.fixture()
def client(uri: str, tmp_path: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def register(client: Any, tmp_path: Path, name: str, versions: int, *,
             tagged: bool = True) -> None:
    client.create_registered_model(
        name, tags={SERVING_NAME_TAG: name.replace("_", "-")} if tagged else None)
    for _ in range(versions):
        client.create_model_version(name, (tmp_path / "model").as_uri())


def go_live(client: Any, name: str, version: str, at: datetime) -> None:
    """What PromoteModel does: the alias moves, the version is marked live."""
    client.set_registered_model_alias(name, ALIAS, version)
    served.mark_live(client, model_name=name, version=version, image_uri=f"img:{name}-v{version}",
                     inference_url=f"http://127.0.0.1:9000/{name}", target="process",
                     deployment_id=f"d-{name}-{version}-{at.hour}", now=at)


def test_the_list_has_the_models_whose_alias_points_at_a_version(
        client: Any, uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register(client, tmp_path, "test_model", 2)
    go_live(client, "test_model", "1", T0)
    go_live(client, "test_model", "2", T0 + timedelta(hours=1))
    register(client, tmp_path, "b_model", 1)
    go_live(client, "b_model", "1", T0)
    register(client, tmp_path, "never_promoted", 1)  # registered, never served
    register(client, tmp_path, "not_ours", 1, tagged=False)  # not deployed by trainship
    client.set_registered_model_alias("not_ours", ALIAS, "1")
    monkeypatch.setattr(models, "MODELS_PAGE", 1)  # every page is read
    listing = models.list_models(uri, ALIAS)
    assert [m.model_name for m in listing.models] == ["b_model", "test_model"]
    test_model = listing.models[1].model_dump()
    assert test_model == {
        "model_name": "test_model", "serving_name": "test-model", "live_version": "2",
        "inference_url": "http://127.0.0.1:9000/test_model", "image_uri": "img:test_model-v2",
        "target": "process", "live_since": "2026-12-01T11:00:00Z",
        "deployment_id": "d-test_model-2-11"}


def test_a_model_whose_alias_was_moved_off_is_not_listed(
        client: Any, uri: str, tmp_path: Path) -> None:
    register(client, tmp_path, "gone", 1)
    go_live(client, "gone", "1", T0)
    client.delete_registered_model_alias("gone", ALIAS)  # what a delete does
    assert models.list_models(uri, ALIAS).models == []


def test_the_detail_has_every_version_newest_first_with_its_periods(
        client: Any, uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register(client, tmp_path, "test_model", 3)
    go_live(client, "test_model", "1", T0)
    go_live(client, "test_model", "2", T0 + timedelta(hours=1))
    go_live(client, "test_model", "1", T0 + timedelta(hours=2))  # a rollback to v1
    monkeypatch.setattr(models, "VERSIONS_PAGE", 2)
    detail = models.describe_model(uri, ALIAS, "test_model")
    assert (detail.live_version, detail.live_since, detail.deployment_id) == (
        "1", "2026-12-01T12:00:00Z", "d-test_model-1-12")
    assert [v.version for v in detail.versions] == ["3", "2", "1"]
    three, two, one = detail.versions
    assert (three.live, three.served, three.image_uri) == (False, [], None)
    assert three.created_at is not None and three.created_at.endswith("Z")
    assert not two.live and two.image_uri == "img:test_model-v2"
    assert [(p.from_, p.to) for p in two.served] == [
        ("2026-12-01T11:00:00Z", "2026-12-01T12:00:00Z")]
    assert one.live
    assert [(p.from_, p.to, p.deployment_id) for p in one.served] == [
        ("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z", "d-test_model-1-10"),
        ("2026-12-01T12:00:00Z", None, "d-test_model-1-12")]
    # the JSON keys are "from" and "to"
    assert detail.model_dump(mode="json")["versions"][2]["served"][1] == {
        "from": "2026-12-01T12:00:00Z", "to": None, "deployment_id": "d-test_model-1-12"}


def test_a_registered_model_that_serves_nothing_still_answers(
        client: Any, uri: str, tmp_path: Path) -> None:
    register(client, tmp_path, "idle_model", 2)
    detail = models.describe_model(uri, ALIAS, "idle_model")
    assert detail.live_version is None and detail.inference_url is None
    assert detail.serving_name == "idle-model"
    assert [(v.version, v.live) for v in detail.versions] == [("2", False), ("1", False)]


@pytest.mark.parametrize("name", ["nope", "test-model", "bad'name", ""])
def test_an_unknown_name_is_model_not_found(client: Any, uri: str, tmp_path: Path,
                                            name: str) -> None:
    register(client, tmp_path, "test_model", 1)
    with pytest.raises(ModelNotFound) as caught:
        models.describe_model(uri, ALIAS, name)
    assert caught.value.http_status == 404 and repr(name) in caught.value.message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("call", ["list", "detail"])
def test_an_unreachable_mlflow_is_registry_unavailable_fast(
        monkeypatch: pytest.MonkeyPatch, call: str) -> None:
    """With the API function's MLflow settings (infra sets API_MLFLOW_ENV on it); MLflow's
    defaults retry for minutes, past API Gateway's 29 s."""
    for name, value in models.API_MLFLOW_ENV.items():
        monkeypatch.setenv(name, value)
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable) as caught:
        if call == "list":
            models.list_models(uri, ALIAS)
        else:
            models.describe_model(uri, ALIAS, "test_model")
    assert time.monotonic() - started < 10
    assert caught.value.http_status == 503
    assert "Connection refused" in caught.value.details or "Max retries" in caught.value.details


def test_no_request_starts_once_the_budget_is_spent(client: Any, uri: str,
                                                    tmp_path: Path) -> None:
    register(client, tmp_path, "test_model", 1)
    with pytest.raises(RegistryUnavailable, match="too slowly"):
        models.list_models(uri, ALIAS, budget=-1)
