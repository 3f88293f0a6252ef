"""The CLI when the API cannot be reached, answers something that is not the API, fails
(5xx) or refuses (a 4xx error document): one line, or the document, with its own exit code,
never a Python traceback. The CLI runs as a user runs it against a fake API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.fake_api import FakeApi, Reply, json_reply, one_line, real_submit, run
from trainship import terminal
from trainship.errors import DeploymentNotFound, InvalidRequest

# --- the API cannot be reached or answers nonsense ------------------------------------

@pytest.mark.parametrize("args", [["deploy", "train.py", "--model-name", "m"],
                                  ["status", "d-1"], ["list"], ["logs", "d-1"]])
def test_connection_refused(tmp_path: Path, script: Path, args: list[str]) -> None:
    proc = run(tmp_path, *args, "--api", "http://127.0.0.1:1")
    assert proc.returncode == terminal.EXIT_UNAVAILABLE == 4
    line = one_line(proc)
    assert "cannot reach the API at http://127.0.0.1:1 (connection refused)" in line
    assert "trainship local up" in line


def test_no_local_stack_running(tmp_path: Path) -> None:
    """Without --api or TRAINSHIP_API, status/list/logs read the local stack's state."""
    for args in (["status", "d-1"], ["list"], ["logs", "d-1"]):
        proc = run(tmp_path, *args)
        assert proc.returncode == terminal.EXIT_UNAVAILABLE
        line = one_line(proc)
        assert "the local stack is not running" in line and "trainship local up" in line


@pytest.mark.parametrize("reply", [
    (200, "text/html", b"<html><body>Welcome to nginx!</body></html>"),
    (200, "application/json", b"{not json"),
    (200, "application/json", b'{"hello": "world"}'),
])
def test_an_api_answering_something_else(tmp_path: Path, script: Path, fake_api: FakeApi,
                                         reply: Reply) -> None:
    fake_api.routes["POST", "/deployments"] = lambda body: reply
    fake_api.routes["GET", "/deployments/d-1"] = lambda body: reply
    for args in (["deploy", str(script), "--model-name", "m"], ["status", "d-1"]):
        proc = run(tmp_path, *args, "--api", fake_api.url)
        assert proc.returncode == terminal.EXIT_UNAVAILABLE
        line = one_line(proc)
        assert fake_api.url in line
        assert "not the trainship API's JSON" in line or "without deployment_id" in line


@pytest.mark.parametrize("reply", [
    (502, "text/html", b"<html>502 Bad Gateway</html>"),
    json_reply(500, {"error": "InternalError", "message": "KeyError: 'x'", "help": "Report"}),
    (503, "application/json", b'{"message": "Service Unavailable"}'),
])
def test_an_api_failing_with_5xx(tmp_path: Path, script: Path, fake_api: FakeApi,
                                 reply: Reply) -> None:
    fake_api.routes["POST", "/deployments"] = lambda body: reply
    proc = run(tmp_path, "deploy", str(script), "--model-name", "m", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_UNAVAILABLE
    line = one_line(proc)
    assert f"the API failed with HTTP {reply[0]}" in line and "try again" in line
    if reply[0] == 500:
        assert "InternalError KeyError: 'x'" in line


# --- the API refuses: its error document -------------------------------------------

def test_a_4xx_error_document(tmp_path: Path, script: Path, fake_api: FakeApi) -> None:
    fake_api.routes["POST", "/deployments"] = real_submit
    proc = run(tmp_path, "deploy", str(script), "--model-name", "my model", "--api",
               fake_api.url)
    assert proc.returncode == terminal.EXIT_REFUSED == 3
    err = proc.stderr
    assert err.startswith("error:   InvalidRequest (HTTP 400)\n")
    assert "message: The request has invalid fields" in err
    assert "model_name" in err  # the details name the field
    assert f"help:    {InvalidRequest.help_text}" in err
    assert proc.stdout == ""
    # --output json: the document itself, on stdout
    proc = run(tmp_path, "deploy", str(script), "--model-name", "my model", "--api",
               fake_api.url, "--output", "json")
    assert proc.returncode == terminal.EXIT_REFUSED
    doc = json.loads(proc.stdout)
    assert doc["error"] == "InvalidRequest" and doc["help"] == InvalidRequest.help_text


def test_a_4xx_that_is_not_a_trainship_document(tmp_path: Path, fake_api: FakeApi) -> None:
    """A proxy's or another server's 4xx: shown, with a help line of its own."""
    fake_api.routes["GET", "/deployments"] = lambda body: json_reply(
        403, {"message": "Missing Authentication Token"})
    proc = run(tmp_path, "list", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_REFUSED
    assert proc.stderr.startswith("error:   HTTP 403\nmessage: Missing Authentication Token\n")
    assert "help:    This is not a trainship error document" in proc.stderr


def test_status_of_an_unknown_deployment(tmp_path: Path, fake_api: FakeApi) -> None:
    missing = DeploymentNotFound("No deployment 'd-unknown'").document().model_dump()
    fake_api.routes["GET", "/deployments/d-unknown"] = lambda body: json_reply(404, missing)
    fake_api.routes["GET", "/deployments/d-unknown/logs"] = lambda body: json_reply(404,
                                                                                    missing)
    for args in (["status", "d-unknown"], ["logs", "d-unknown"]):
        proc = run(tmp_path, *args, "--api", fake_api.url)
        assert proc.returncode == terminal.EXIT_REFUSED
        assert proc.stderr.startswith("error:   DeploymentNotFound (HTTP 404)\n")
        assert "message: No deployment 'd-unknown'" in proc.stderr
        assert f"help:    {DeploymentNotFound.help_text}" in proc.stderr
