"""The CLI as a user meets it: each failure is one line on stderr with its own exit code,
never a Python traceback. The CLI runs as a user runs it (the installed ``trainship``
command, in a subprocess) against a small fake API on a local port."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from trainship import cli, terminal
from trainship.errors import DeploymentNotFound, InvalidRequest
from trainship.request import parse_request

REPO = Path(__file__).resolve().parents[2]
TRAINSHIP = Path(sys.executable).with_name("trainship")
SCRIPT = "import mlflow\nprint('training')\n"

Reply = tuple[int, str, bytes]
Route = Callable[[Any], Reply]


def json_reply(status: int, doc: Any) -> Reply:
    return status, "application/json", json.dumps(doc).encode()


class FakeApi:
    """Routes (method, path) to a function of the JSON body; records what was asked."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.seen: list[tuple[str, str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                api.seen.append((self.command, self.path, body))
                route = api.routes.get((self.command, self.path))
                status, ctype, data = (route(body) if route else json_reply(
                    404, {"error": "NotFound", "message": f"No route {self.path}"}))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # shutdown() waits for the loop's next poll (0.5 s by default)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRAINSHIP_API", "TRAINSHIP_DEBUG", "TRAINSHIP_HOME")}
    # an empty state directory: no local stack is running there
    return {**env, "TRAINSHIP_HOME": str(tmp_path / "home"), **extra}


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(TRAINSHIP), *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env_for(tmp_path, **env), timeout=120)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("trainship: ")
    return lines[0]


def real_submit(body: Any) -> Reply:
    """POST /deployments as the API validates it: the real 400 document, or 202."""
    try:
        parse_request(body)
    except InvalidRequest as exc:
        return json_reply(400, exc.document().model_dump())
    return json_reply(202, {"deployment_id": "d-0123456789abcdef", "status": "RUNNING",
                            "status_url": "/deployments/d-0123456789abcdef"})


def record(status: str, **extra: Any) -> dict[str, Any]:
    return {"deployment_id": "d-0123456789abcdef", "status": status,
            "steps": [{"name": "ValidateRequest", "status": "SUCCEEDED", "seconds": 0.1},
                      {"name": "TrainModel", "status": "RUNNING"}], **extra}


# --- local input ------------------------------------------------------------------

def test_deploy_a_missing_script(tmp_path: Path, fake_api: FakeApi) -> None:
    proc = run(tmp_path, "deploy", "missing.py", "--model-name", "m", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_USAGE == 2
    line = one_line(proc)
    assert "missing.py" in line and "no such file" in line
    assert fake_api.seen == []  # nothing was sent


@pytest.mark.parametrize("command", ["deploy", "request"])
def test_a_requirements_file_that_does_not_exist(tmp_path: Path, script: Path,
                                                 fake_api: FakeApi, command: str) -> None:
    proc = run(tmp_path, command, str(script), "--model-name", "m", "--requirements-file",
               "requirements.txt", *(["--api", fake_api.url] if command == "deploy" else []))
    assert proc.returncode == terminal.EXIT_USAGE
    line = one_line(proc)
    assert "requirements file requirements.txt: no such file" in line
    assert proc.stdout == "" and fake_api.seen == []


def test_a_directory_or_binary_file_as_script(tmp_path: Path, fake_api: FakeApi) -> None:
    proc = run(tmp_path, "deploy", str(tmp_path), "--model-name", "m", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_USAGE
    assert "is a directory" in one_line(proc)
    binary = tmp_path / "model.pkl"
    binary.write_bytes(b"\x80\x04\x95\xff\xfe")
    proc = run(tmp_path, "deploy", str(binary), "--model-name", "m", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_USAGE
    assert "not UTF-8 text" in one_line(proc)


def test_bad_arguments_are_usage_errors(tmp_path: Path, script: Path) -> None:
    proc = run(tmp_path, "deploy", str(script))  # --model-name missing
    assert proc.returncode == terminal.EXIT_USAGE
    assert "--model-name" in proc.stderr
    proc = run(tmp_path, "deploy", str(script), "--model-name", "m", "--api", "127.0.0.1:8080")
    assert proc.returncode == terminal.EXIT_USAGE
    assert "not an http:// or https:// URL" in one_line(proc)


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


# --- waiting -------------------------------------------------------------------------

def test_a_failed_deployment_exits_1(tmp_path: Path, script: Path, fake_api: FakeApi) -> None:
    fake_api.routes["POST", "/deployments"] = real_submit
    failed = record("FAILED", error={"error": "ScriptFailed", "step": "TrainModel",
                                     "message": "The script exited with 1",
                                     "details": "ValueError: boom", "help": "Fix the script"})
    fake_api.routes["GET", "/deployments/d-0123456789abcdef"] = lambda body: json_reply(
        200, failed)
    proc = run(tmp_path, "deploy", str(script), "--model-name", "m", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_FAILED == 1
    assert "error:   ScriptFailed" in proc.stderr and "ValueError: boom" in proc.stderr


def test_waiting_rides_out_api_hiccups(tmp_path: Path, script: Path,
                                       fake_api: FakeApi) -> None:
    fake_api.routes["POST", "/deployments"] = real_submit
    answers = iter([(503, "text/html", b"busy"), json_reply(429, {"message": "slow down"}),
                    json_reply(200, record("RUNNING"))])
    done = record("SUCCEEDED", result={
        "status": "SUCCEEDED", "deployment_id": "d-0123456789abcdef",
        "inference_url": "http://127.0.0.1:9", "model_name": "m", "model_version": "1",
        "image_uri": "img@sha256:0", "deployment_time_seconds": 3.2})
    fake_api.routes["GET", "/deployments/d-0123456789abcdef"] = lambda body: next(
        answers, json_reply(200, done))
    proc = run(tmp_path, "deploy", str(script), "--model-name", "m", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_OK, proc.stderr
    assert "inference_url:" in proc.stdout and "http://127.0.0.1:9" in proc.stdout
    # the body sent is the script as text
    assert fake_api.seen[0][2]["script"] == SCRIPT


def test_ctrl_c_during_deploy(tmp_path: Path, script: Path, fake_api: FakeApi) -> None:
    fake_api.routes["POST", "/deployments"] = real_submit
    fake_api.routes["GET", "/deployments/d-0123456789abcdef"] = lambda body: json_reply(
        200, record("RUNNING"))
    proc = subprocess.Popen([str(TRAINSHIP), "deploy", str(script), "--model-name", "m",
                             "--api", fake_api.url], cwd=tmp_path, env=env_for(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        started = proc.stderr.readline()
        assert "deployment d-0123456789abcdef started" in started
        deadline = time.monotonic() + 30  # interrupt while it polls
        while sum(1 for m, _, _ in fake_api.seen if m == "GET") < 2:
            assert time.monotonic() < deadline, "the CLI never polled"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == terminal.EXIT_INTERRUPTED == 130
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("trainship: interrupted: deployment d-0123456789abcdef keeps "
                           "running")
    assert f"trainship status d-0123456789abcdef --api {fake_api.url}" in last


def test_giving_up_waiting_exits_5(fake_api: FakeApi) -> None:
    fake_api.routes["GET", "/deployments/d-1"] = lambda body: json_reply(
        200, {**record("RUNNING"), "deployment_id": "d-1"})
    with pytest.raises(terminal.CliError) as caught:
        terminal.wait_for(cli.Client(fake_api.url), "d-1", progress=False, poll=0.01, timeout=0.1)
    assert caught.value.code == terminal.EXIT_STILL_RUNNING == 5
    assert "still running" in str(caught.value) and "trainship status d-1" in str(caught.value)


def test_an_unexpected_error_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str],
                                         script: Path) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("something trainship did not expect")

    monkeypatch.setattr(cli.Client, "submit", broken)
    monkeypatch.delenv("TRAINSHIP_DEBUG", raising=False)
    argv = ["deploy", str(script), "--model-name", "m", "--api", "http://127.0.0.1:1"]
    assert cli.main(argv) == terminal.EXIT_INTERNAL == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: something" in err
    assert "TRAINSHIP_DEBUG=1" in err
    monkeypatch.setenv("TRAINSHIP_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(argv)


def test_stdout_closed_early(tmp_path: Path, fake_api: FakeApi) -> None:
    """`trainship logs ID | head -1`: the reader goes away; no traceback, exit 141."""
    fake_api.routes["GET", "/deployments/d-1/logs"] = lambda body: (
        200, "text/plain", b"build log line\n" * 200_000)
    proc = subprocess.Popen([str(TRAINSHIP), "logs", "d-1", "--api", fake_api.url],
                            cwd=tmp_path, env=env_for(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like head exiting before reading anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == terminal.EXIT_BROKEN_PIPE == 141
    assert err == ""


# --- trainship request ---------------------------------------------------------------

def test_request_prints_the_original_body(tmp_path: Path) -> None:
    script = tmp_path / "test_train.py"
    script.write_bytes((REPO / "docs" / "examples" / "mlops_deploy_original.py").read_bytes())
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# pinned\nlightgbm==4.6.0  # the booster\n\n")
    proc = run(tmp_path, "request", str(script), "--model-name", "customer-churn",
               "--experiment-name", "production", "--requirements", "xgboost",
               "--requirements-file", str(reqs), "--timeout", "600", "--replicas", "3")
    assert proc.returncode == 0 and proc.stderr == ""
    body = json.loads(proc.stdout)
    assert base64.b64decode(body["script_content"], validate=True) == script.read_bytes()
    assert body == {"model_name": "customer-churn", "script_content": body["script_content"],
                    "requirements": ["xgboost", "lightgbm==4.6.0"],
                    "experiment_name": "production", "timeout": 600, "replicas": 3}
    # the API's own validation accepts it and decodes the same script
    request, text = parse_request(body)
    assert text == script.read_text() and request.timeout == 600


def test_request_with_only_a_model_name(tmp_path: Path, script: Path) -> None:
    proc = run(tmp_path, "request", str(script), "--model-name", "m")
    assert proc.returncode == 0
    body = json.loads(proc.stdout)
    assert set(body) == {"model_name", "script_content", "requirements"}
    assert parse_request(body)[1] == SCRIPT


def test_request_of_a_missing_script(tmp_path: Path) -> None:
    proc = run(tmp_path, "request", "missing.py", "--model-name", "m")
    assert proc.returncode == terminal.EXIT_USAGE
    assert "missing.py: no such file" in one_line(proc)
    assert proc.stdout == ""


# --- docs ----------------------------------------------------------------------------

def test_every_exit_code_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\d+)` \| (.+?) \|$", section, re.M))
    assert {int(code) for code in rows} == set(terminal.EXIT_CODES)
    proc = subprocess.run([str(TRAINSHIP), "--help"], capture_output=True, text=True,
                          timeout=60)
    help_text = " ".join(proc.stdout.split())
    for code, what in terminal.EXIT_CODES.items():
        assert f"{code} {what}" in help_text
