"""The console's HTTP server (trainship.console.server) on a real port: against a fake
``ConsoleData`` (the routes, 404s, no tracebacks to the browser), and its data layer
(trainship.console.data.StackData) against a fake API, a fake Step Functions client and a
fake model (the try-it form's forwarding, with the stored token)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fake_api import FakeApi, json_reply
from trainship import token_store
from trainship.console.data import (
    DeploymentNotFound,
    DeploymentView,
    HomeView,
    ModelRow,
    StackData,
    StatusView,
    TryResult,
    asl_definition,
    mlflow_reachable,
)
from trainship.console.graph import StateRun
from trainship.console.history import StateDetail
from trainship.console.server import ConsoleServer, handle, refusal, try_body

ARN = "arn:aws:states:us-east-1:123456789012:execution:TrainAndDeploy:d-1"


class FakeData:
    """One deployment, d-1 (RUNNING); anything else is not found; d-boom raises."""

    def __init__(self) -> None:
        self.tried: list[tuple[str, bytes]] = []

    def _known(self, deployment_id: str) -> None:
        if deployment_id == "d-boom":
            raise RuntimeError("the API fell over")
        if deployment_id != "d-1":
            raise DeploymentNotFound(deployment_id)

    def home(self) -> HomeView:
        return HomeView([], [ModelRow("iris", "1", "http://127.0.0.1:1", "process")],
                        "http://mlflow")

    def deployment(self, deployment_id: str) -> DeploymentView:
        self._known(deployment_id)
        return DeploymentView(
            record={"deployment_id": "d-1", "status": "RUNNING", "started_at": None,
                    "stopped_at": None, "steps": [], "builds": []},
            definition=asl_definition(), runs={}, mlflow_url="http://mlflow")

    def status(self, deployment_id: str) -> StatusView:
        self._known(deployment_id)
        return StatusView("RUNNING", asl_definition(),
                          {"ValidateRequest": StateRun("running", 1, None, 0)})

    def state_details(self, deployment_id: str, state: str) -> list[StateDetail]:
        self._known(deployment_id)
        return [StateDetail(datetime(2026, 1, 1, tzinfo=UTC), None,
                            input=json.dumps({"state": state}), output=None, error=None,
                            cause=None)]

    def try_it(self, deployment_id: str, body: bytes) -> TryResult:
        self._known(deployment_id)
        self.tried.append((deployment_id, body))
        return TryResult(200, '{"predictions": [1]}')


@pytest.fixture
def console() -> Iterator[tuple[ConsoleServer, FakeData]]:
    data = FakeData()
    server = ConsoleServer("127.0.0.1", 0, data=data)
    server.start()
    try:
        yield server, data
    finally:
        server.stop()


def get(url: str, body: bytes | None = None,
        ctype: str = "application/json") -> tuple[int, str, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_routes(console: tuple[ConsoleServer, FakeData]) -> None:
    server, data = console
    status, ctype, text = get(server.url + "/")
    assert status == 200 and ctype.startswith("text/html") and 'data-model="iris"' in text
    status, _, text = get(server.url + "/deployments/d-1")
    assert status == 200 and '<span id="status" class="st-RUNNING">RUNNING</span>' in text
    status, ctype, text = get(server.url + "/deployments/d-1/status.json")
    answer = json.loads(text)
    assert status == 200 and ctype == "application/json" and answer["status"] == "RUNNING"
    assert 'data-state="ValidateRequest" data-status="running"' in answer["graph"]
    status, _, text = get(server.url + "/deployments/d-1/states/Train%20Model")
    assert status == 200 and "&quot;Train Model&quot;" in text and "state-input" in text
    status, _, text = get(server.url + "/deployments/d-1/try", b'{"inputs": [1]}')
    assert status == 200 and json.loads(text) == {"predictions": [1]}
    # the form posted without the page's script
    status, _, _ = get(server.url + "/deployments/d-1/try", b"body=%7B%22a%22%3A1%7D",
                       "application/x-www-form-urlencoded")
    assert data.tried == [("d-1", b'{"inputs": [1]}'), ("d-1", b'{"a":1}')]


def test_unknown_deployments_and_pages_are_404_pages(
        console: tuple[ConsoleServer, FakeData]) -> None:
    server, _ = console
    for path in ("/deployments/d-nope", "/deployments/d-nope/status.json",
                 "/deployments/d-nope/states/TrainModel", "/nothing/here"):
        status, ctype, text = get(server.url + path)
        assert status == 404 and ctype.startswith("text/html"), path
        assert "Not found" in text
    status, _, _ = get(server.url + "/deployments/d-nope/try", b"{}")
    assert status == 404


def test_a_failure_is_one_line_not_a_traceback(
        console: tuple[ConsoleServer, FakeData], capsys: pytest.CaptureFixture[str]) -> None:
    server, _ = console
    status, _, text = get(server.url + "/deployments/d-boom")
    assert status == 500
    assert "RuntimeError: the API fell over" in text and "Traceback" not in text
    assert "Traceback" in capsys.readouterr().err  # for the daemon's log


def test_other_sites_and_rebound_names_are_refused(
        console: tuple[ConsoleServer, FakeData]) -> None:
    server, data = console
    port = server.url.rsplit(":", 1)[1]
    assert refusal(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", "POST") is None
    assert refusal(f"localhost:{port}", None, "GET") is None
    assert refusal(f"[::1]:{port}", None, "GET") is None
    assert refusal(f"evil.example:{port}", None, "GET") is not None
    assert refusal(f"127.0.0.1:{port}", "http://evil.example", "POST") is not None
    status, _, _ = handle(data, "POST", "/deployments/d-1/try", "application/json", b"{}",
                          host=f"127.0.0.1:{port}", origin="http://evil.example")
    assert status == 403 and data.tried == []
    request = urllib.request.Request(server.url + "/", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


def test_try_body() -> None:
    assert try_body("application/json", b'{"a": 1}') == b'{"a": 1}'
    assert try_body("application/x-www-form-urlencoded", b"body=%5B1%5D&x=2") == b"[1]"


# --- StackData against a fake API, Step Functions and model -----------------------------

class FakeSfn:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def get_execution_history(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["executionArn"] == ARN
        if "nextToken" not in kwargs:  # two pages
            return {"events": self.events[:1], "nextToken": "t"}
        return {"events": self.events[1:]}

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        return {"input": json.dumps({"model_name": "iris"})}


EVENTS = [
    {"id": 1, "type": "ExecutionStarted", "timestamp": "2026-01-01T10:00:00+00:00"},
    {"id": 2, "type": "TaskStateEntered", "timestamp": "2026-01-01T10:00:01+00:00",
     "stateEnteredEventDetails": {"name": "ValidateRequest", "input": "{}"}},
    {"id": 3, "type": "TaskStateExited", "timestamp": "2026-01-01T10:00:02+00:00",
     "stateExitedEventDetails": {"name": "ValidateRequest", "output": '{"ok": true}'}},
]


def record(model: FakeApi, status: str = "SUCCEEDED") -> dict[str, Any]:
    return {"deployment_id": "d-1", "status": status, "execution_arn": ARN,
            "started_at": "2026-01-01T10:00:00+00:00", "stopped_at": None,
            "current_step": "ValidateRequest", "steps": [], "builds": [],
            "result": {"inference_url": model.url, "model_name": "iris"}}


@pytest.fixture
def model() -> Iterator[FakeApi]:
    fake = FakeApi()
    try:
        yield fake
    finally:
        fake.close()


def test_stack_data_reads_the_api_and_the_history(fake_api: FakeApi, model: FakeApi) -> None:
    fake_api.routes["GET", "/deployments"] = lambda body: json_reply(200, {"deployments": [
        {"deployment_id": "d-1", "status": "RUNNING", "started_at": None, "stopped_at": None}]})
    fake_api.routes["GET", "/deployments/d-1"] = lambda body: json_reply(
        200, record(model, "RUNNING") | {"result": None})
    fake_api.routes["GET", "/models"] = lambda body: json_reply(200, {"models": []})
    data = StackData(fake_api.url, lambda: FakeSfn(EVENTS), "http://mlflow")
    home = data.home()
    assert [(d.deployment_id, d.model_name, d.current_step) for d in home.deployments] == [
        ("d-1", "iris", "ValidateRequest")]
    assert data.status("d-1").runs["ValidateRequest"].status == "succeeded"
    details = data.state_details("d-1", "ValidateRequest")
    assert details and details[0].output == '{"ok": true}'
    with pytest.raises(DeploymentNotFound):
        data.status("d-nope")


def test_try_it_forwards_to_invocations_with_the_stored_token(
        fake_api: FakeApi, model: FakeApi, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    token_store.save(model.url, "s3cret", model_name="iris")
    fake_api.routes["GET", "/deployments/d-1"] = lambda body: json_reply(200, record(model))
    model.routes["POST", "/invocations"] = lambda body: json_reply(200, {"predictions": [2]})
    data = StackData(fake_api.url, lambda: FakeSfn(EVENTS), "http://mlflow")
    answer = data.try_it("d-1", b'{"inputs": [[1, 2]]}')
    assert answer.status == 200 and json.loads(answer.body) == {"predictions": [2]}
    assert model.seen == [("POST", "/invocations", {"inputs": [[1, 2]]})]
    assert model.headers[0]["Authorization"] == "Bearer s3cret"
    model.routes["POST", "/invocations"] = lambda body: json_reply(
        400, {"error_code": "BAD_REQUEST"})
    assert data.try_it("d-1", b"{}").status == 400
    fake_api.routes["GET", "/deployments/d-1"] = lambda body: json_reply(
        200, record(model, "FAILED") | {"result": None})
    assert data.try_it("d-1", b"{}").status == 409


def test_pages_cannot_be_framed_and_a_bad_length_is_a_400(
        console: tuple[ConsoleServer, FakeData]) -> None:
    server, _ = console
    with urllib.request.urlopen(server.url + "/", timeout=10) as response:
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /deployments/d-1/try HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: many\r\n\r\n")
        assert conn.recv(100).startswith(b"HTTP/1.1 400")


def test_mlflow_that_does_not_answer_is_told_apart_in_seconds() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert not mlflow_reachable(f"http://127.0.0.1:{port}")
    refusing = FakeApi()  # answers 404 to /health: it answers, so MLflow is asked
    try:
        assert mlflow_reachable(refusing.url)
    finally:
        refusing.close()
