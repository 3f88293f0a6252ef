"""GET /models and GET /models/{model_name} through the API function (lambdas/api.py) on API
Gateway proxy events, over a real MLflow registry (sqlite): each answer, error documents
included, is checked against docs/openapi.json's schema for it."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lambdas.api import handler
from tests.helpers import LambdaContext, api_gateway_event
from tests.unit.api_harness import conforms, parse_response
from trainship import models, served
from trainship.names import serving_name
from trainship.registry import SERVING_NAME_TAG

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def call(path: str) -> tuple[int, Any]:
    """(status, JSON body) of the function's answer to GET ``path``, checked against the
    document's schema for the route and status."""
    resource, parameters = path, None
    if path.count("/") == 2:
        resource, parameters = "/models/{model_name}", {"model_name": path.split("/")[2]}
    status, kind, body = parse_response(handler(api_gateway_event(
        "GET", path, resource=resource, path_parameters=parameters), LambdaContext()))
    assert kind == "application/json"
    conforms(resource, "get", status, body)
    return status, body


@pytest.fixture()
def registry(tmp_path: Path, registry_uri: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """test_model v1 then v2 live, Iris.v2 registered and never live."""
    from mlflow import MlflowClient

    uri = registry_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("TRAINSHIP_MODEL_ALIAS", "live")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    (tmp_path / "model").mkdir()
    for name, versions in (("test_model", 2), ("Iris.v2", 1)):
        client.create_registered_model(name, tags={SERVING_NAME_TAG: serving_name(name)})
        for _ in range(versions):
            client.create_model_version(name, (tmp_path / "model").as_uri())
    for version, at in (("1", T0), ("2", T0 + timedelta(hours=1))):
        client.set_registered_model_alias("test_model", "live", version)
        served.mark_live(client, model_name="test_model", version=version,
                         image_uri=f"img:v{version}", inference_url="http://127.0.0.1:9000",
                         target="process", deployment_id=f"d-{version}", now=at)
    return client


def test_get_models_lists_what_serves(registry: Any) -> None:
    status, body = call("/models")
    assert status == 200
    assert body == {"models": [{
        "model_name": "test_model", "serving_name": "test-model", "live_version": "2",
        "inference_url": "http://127.0.0.1:9000", "image_uri": "img:v2", "target": "process",
        "live_since": "2026-12-01T11:00:00Z", "deployment_id": "d-2"}]}


def test_get_model_has_the_versions_and_their_periods(registry: Any) -> None:
    status, body = call("/models/test_model")
    assert status == 200 and body["live_version"] == "2"
    assert [(v["version"], v["live"], v["image_uri"]) for v in body["versions"]] == [
        ("2", True, "img:v2"), ("1", False, "img:v1")]
    assert body["versions"][1]["served"] == [
        {"from": "2026-12-01T10:00:00Z", "to": "2026-12-01T11:00:00Z", "deployment_id": "d-1"}]
    assert body["versions"][0]["served"][0]["to"] is None


def test_a_model_that_serves_nothing_answers_with_live_version_null(registry: Any) -> None:
    status, body = call("/models/Iris.v2")
    assert status == 200
    assert body["model_name"] == "Iris.v2" and body["live_version"] is None
    assert [v["version"] for v in body["versions"]] == ["1"]


def test_an_unknown_model_is_404_model_not_found(registry: Any) -> None:
    status, body = call("/models/test-model")  # the serving name, not the model name
    assert status == 404 and body["error"] == "ModelNotFound"
    assert "trainship models" in body["help"]


def test_an_unreachable_mlflow_answers_503_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API function's MLflow settings (API_MLFLOW_ENV, which infra sets on it) answer
    an MLflow outage with an error document well within API Gateway's 29 s."""
    for name, value in models.API_MLFLOW_ENV.items():
        monkeypatch.setenv(name, value)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    for path in ("/models", "/models/test_model"):
        started = time.monotonic()
        status, body = call(path)
        assert time.monotonic() - started < 10
        assert status == 503 and body["error"] == "RegistryUnavailable", body
        assert body["details"] and body["help"]
