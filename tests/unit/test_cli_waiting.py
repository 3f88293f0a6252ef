"""The CLI while it waits for a deployment and when it ends: a failed deployment, API
hiccups ridden out, Ctrl-C, giving up, an unexpected error (one line unless TRAINSHIP_DEBUG
is on), and stdout closed early."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fake_api import (
    SCRIPT,
    TRAINSHIP,
    FakeApi,
    env_for,
    json_reply,
    real_submit,
    record,
    run,
)
from trainship import cli, terminal

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


@pytest.mark.parametrize("off", ["0", "false", "no", "off", "OFF", ""])
def test_debug_switched_off_keeps_the_traceback_hidden(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], script: Path,
        off: str) -> None:
    """TRAINSHIP_DEBUG=0 is off (any non-empty value used to switch the traceback on)."""
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("something trainship did not expect")

    monkeypatch.setattr(cli.Client, "submit", broken)
    monkeypatch.setenv("TRAINSHIP_DEBUG", off)
    argv = ["deploy", str(script), "--model-name", "m", "--api", "http://127.0.0.1:1"]
    assert cli.main(argv) == terminal.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: something" in err


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


def test_the_local_stack_is_polled_often_a_remote_api_once_a_second() -> None:
    assert terminal.poll_seconds("http://127.0.0.1:8000") == terminal.LOCAL_POLL_SECONDS
    assert terminal.poll_seconds("http://localhost:8000/") == terminal.LOCAL_POLL_SECONDS
    assert terminal.poll_seconds(
        "https://abc123.execute-api.us-east-1.amazonaws.com/prod") == 1.0
    assert terminal.LOCAL_POLL_SECONDS < 1.0
