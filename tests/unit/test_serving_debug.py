"""A deployment that asks for ``debug``: the request field, the CLI, and how it reaches the
inference service (TRAINSHIP_SERVING_DEBUG in a pod, --debug for a process), a rollback and
a restart included. tests/e2e/test_serving_debug.py checks the served answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import handle
from tests.helpers import state as make_state
from tests.unit.fake_kube import fake_cluster, spec
from trainship import steps
from trainship.cli import build_parser
from trainship.cli_request import request_body
from trainship.cluster import Applied, RolloutStatus, front, process
from trainship.cluster.handles import KubernetesHandle, read
from trainship.cluster.manifests import DEBUG_ENV, WorkloadSpec, deployment
from trainship.cluster.process import ProcessDriver
from trainship.config import ClusterSettings, Settings
from trainship.errors import InvalidRequest
from trainship.request import normalize, parse_request
from trainship.serving.settings import ServingSettings

BODY = {"model_name": "iris", "script": "print(1)"}


def _env(spec: WorkloadSpec) -> dict[str, str]:
    container = deployment(spec)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


def test_debug_is_false_unless_asked() -> None:
    request, script = parse_request(BODY)
    assert request.debug is False
    assert normalize(request, script, deployment_id="d-1", script_uri="s").debug is False
    request, script = parse_request({**BODY, "debug": True})
    assert normalize(request, script, deployment_id="d-1", script_uri="s").debug is True


@pytest.mark.parametrize("value", ["true", 1, 0, "yes", None, [True]])
def test_a_debug_that_is_not_a_boolean_is_invalid_request(value: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request({**BODY, "debug": value})
    assert "debug" in str(caught.value.details)


@pytest.mark.parametrize("command", ["deploy", "request"])
def test_the_cli_sends_debug_only_when_asked(tmp_path: Path, command: str) -> None:
    script = tmp_path / "train.py"
    script.write_text("print(1)\n")
    field = "script" if command == "deploy" else "script_content"
    args = build_parser().parse_args([command, str(script), "--model-name", "m"])
    assert "debug" not in request_body(args, field)
    args = build_parser().parse_args([command, str(script), "--model-name", "m", "--debug"])
    body = request_body(args, field)
    assert body["debug"] is True
    assert parse_request(body)[0].debug is True


def test_the_manifest_sets_the_serving_debug_variable_only_when_asked() -> None:
    assert DEBUG_ENV not in _env(WorkloadSpec("iris", "3", "img"))
    env = _env(WorkloadSpec("iris", "3", "img", debug=True))
    # the value the inference service reads as true (its own parser, not a copy of it)
    assert ServingSettings.from_env(env).debug is True
    assert ServingSettings.from_env(_env(WorkloadSpec("iris", "3", "img"))).debug is False


def test_deploy_model_carries_the_state_s_debug_to_the_driver(tmp_path: Path) -> None:
    applied: list[WorkloadSpec] = []

    class Driver:
        def apply(self, spec: WorkloadSpec) -> Any:
            applied.append(spec)
            return Applied(inference_url="u", handle=handle(), test_url="t")

        def read_auth(self, model_name: str) -> str | None:  # DeployModel writes it first
            return None

        def write_auth(self, model_name: str, text: str) -> None:
            pass

        def update_auth(self, model_name: str, change: Any) -> str | None:
            return change(None)

    for debug in (False, True):
        state = make_state(tmp_path, debug=debug, model={
            "name": "m", "version": "1", "run_id": "r", "model_uri": "u", "source": "s"},
            image={"build_id": "", "exported_variables": [
                {"Name": "IMAGE_URI", "Value": "img"}]})
        steps.deploy_model(state, settings=Settings.from_env(), driver=Driver())  # type: ignore[arg-type]
        assert applied[-1].debug is debug


def test_the_kubernetes_driver_keeps_debug_and_gives_it_back_for_an_undo() -> None:
    with fake_cluster(ClusterSettings()) as (fake, driver):
        driver.apply(spec("1", debug=True))
        container = fake.objects[("Deployment", "trainship", "iris")]["spec"]["template"][
            "spec"]["containers"][0]
        assert {"name": DEBUG_ENV, "value": "true"} in container["env"]
        second = driver.apply(spec("2"))
        # the undo of v2 re-applies v1 as it was: with debug
        previous = read(KubernetesHandle, second.handle)["previous"]
        assert previous is not None and previous["debug"] is True
        container = fake.objects[("Deployment", "trainship", "iris")]["spec"]["template"][
            "spec"]["containers"][0]
        assert DEBUG_ENV not in {e["name"] for e in container["env"]}


def test_the_process_driver_passes_debug_and_restores_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        process_starts: list[list[str]]) -> None:
    started = process_starts
    monkeypatch.setattr(front, "point", lambda directory, port: None)
    driver = ProcessDriver(tmp_path / "serving")
    driver.apply(spec("1"))
    assert "--debug" not in started[-1]
    applied = driver.apply(spec("2", debug=True))
    assert started[-1][-1] == "--debug"
    record = tmp_path / "serving" / "iris" / "v2.json"
    assert json.loads(record.read_text())["debug"] is True
    # a restart serves the version as it was deployed
    record.write_text(json.dumps({**applied.handle, "state": "serving", "pid": 999999999}))
    monkeypatch.setattr(process, "pid_alive", lambda pid: False)
    monkeypatch.setattr(ProcessDriver, "status", lambda self, handle: RolloutStatus(
        ready=True, message="ready"))
    driver.restore()
    assert started[-1][-1] == "--debug"
