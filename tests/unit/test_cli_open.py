"""`trainship open DEPLOYMENT` as a user runs it: the local console's page when the API is
the local stack's, the Step Functions console's execution URL otherwise (an AWS stack)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.unit.fake_api import FakeApi, json_reply, run
from trainship.cli_open import execution_console_url, has_browser
from trainship.local import stack

ARN = "arn:aws:states:eu-west-2:123456789012:execution:TrainAndDeploy:d-1"
NO_BROWSER = {"DISPLAY": "", "WAYLAND_DISPLAY": "", "BROWSER": ""}


def _deployment(fake_api: FakeApi) -> None:
    fake_api.routes["GET", "/deployments/d-1"] = lambda body: json_reply(200, {
        "deployment_id": "d-1", "status": "SUCCEEDED", "execution_arn": ARN,
        "started_at": None, "stopped_at": None, "steps": [], "builds": []})


def test_aws_stack_prints_the_step_functions_console_url(tmp_path: Path,
                                                         fake_api: FakeApi) -> None:
    _deployment(fake_api)
    proc = run(tmp_path, "open", "d-1", "--api", fake_api.url, **NO_BROWSER)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "https://eu-west-2.console.aws.amazon.com/states/home?region=eu-west-2"
        f"#/v2/executions/details/{ARN}")


def test_local_stack_prints_the_console_page(tmp_path: Path, fake_api: FakeApi) -> None:
    _deployment(fake_api)
    home = tmp_path / "home"
    lock = stack.hold_lock(home)  # this process stands for the stack's daemon
    assert lock is not None
    try:
        stack.Paths(home).info.write_text(json.dumps({
            "pid": os.getpid(), "ready": True, "api": fake_api.url,
            "console": "http://127.0.0.1:8765"}))
        proc = run(tmp_path, "open", "d-1", **NO_BROWSER)
    finally:
        lock.close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "http://127.0.0.1:8765/deployments/d-1"


def test_an_unknown_deployment_is_refused(tmp_path: Path, fake_api: FakeApi) -> None:
    proc = run(tmp_path, "open", "d-nope", "--api", fake_api.url, **NO_BROWSER)
    assert proc.returncode != 0 and "NotFound" in proc.stderr
    assert proc.stdout == ""


def test_execution_console_url_needs_an_execution_arn() -> None:
    with pytest.raises(ValueError):
        execution_console_url("arn:aws:states:us-east-1:1:stateMachine:TrainAndDeploy")
    assert has_browser({}) == (sys.platform in ("darwin", "win32"))
    assert has_browser({"DISPLAY": ":0"})


def test_local_up_and_status_print_the_console_url(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from trainship import cli

    info = {"api": "http://127.0.0.1:1", "mlflow": "http://127.0.0.1:2",
            "stepfunctions": "http://127.0.0.1:3", "console": "http://127.0.0.1:4",
            "state_machine_arn": "arn:aws:states:us-east-1:1:stateMachine:TrainAndDeploy"}
    monkeypatch.setattr(stack, "up", lambda home: info)
    monkeypatch.setattr(stack, "read_info", lambda home: info)
    assert cli.main(["local", "up", "--home", str(tmp_path)]) == 0
    assert "Console: http://127.0.0.1:4\n" in capsys.readouterr().out
    assert cli.main(["local", "status", "--home", str(tmp_path)]) == 0
    assert "Console: http://127.0.0.1:4\n" in capsys.readouterr().out
