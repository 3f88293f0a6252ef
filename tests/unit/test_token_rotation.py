"""Token rotation: POST /models/{model_name}/token on the API function (202 and the
rotation's execution input; ModelNotFound, DeploymentInProgress with nothing started; each
answer checked against docs/openapi.json), and RotateToken's logic
(trainship.token_rotation) on a real MLflow registry with a driver that keeps auth files in
memory: a new delivered token under the model's lock, refusals that change nothing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdas.api import handler
from tests.helpers import LambdaContext, api_gateway_event
from tests.unit.api_harness import MACHINE, conforms, mocked_state_machine
from trainship import auth, served, token_rotation
from trainship.config import Settings
from trainship.errors import AuthNotEnabled, DeploymentInProgress, ModelNotFound

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")
RESOURCE = "/models/{model_name}/token"


# --- the API route ---------------------------------------------------------------------------

@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Step Functions whose executions stay RUNNING; a registry with auth_model."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model("auth_model")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield from mocked_state_machine(monkeypatch, MACHINE, {})


def rotate(name: str) -> tuple[int, Any]:
    event = api_gateway_event("POST", f"/models/{name}/token", resource=RESOURCE,
                              path_parameters={"model_name": name})
    response = handler(event, LambdaContext())
    body = json.loads(response["body"])
    conforms(RESOURCE, "post", response["statusCode"], body)
    return response["statusCode"], body


def executions(sfn: Any) -> list[dict[str, Any]]:
    arn = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    return [sfn.describe_execution(executionArn=e["executionArn"])
            for e in sfn.list_executions(stateMachineArn=arn)["executions"]]


def test_rotate_starts_the_rotation_execution(sfn: Any) -> None:
    status, body = rotate("auth_model")
    assert status == 202 and body["status"] == "RUNNING"
    [execution] = executions(sfn)
    assert execution["name"] == body["deployment_id"]
    assert json.loads(execution["input"]) == {"action": "rotate-token",
                                              "model_name": "auth_model"}


def test_unknown_model_is_404_and_starts_nothing(sfn: Any) -> None:
    for name in ("unknown_model", "bad name"):
        status, body = rotate(name)
        assert (status, body["error"]) == (404, "ModelNotFound") and body["help"]
    assert executions(sfn) == []


def test_a_running_deployment_of_the_model_is_409_and_starts_nothing(sfn: Any) -> None:
    arn = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    sfn.start_execution(stateMachineArn=arn, name="d-running",
                        input=json.dumps({"model_name": "auth_model", "script": "x"}))
    status, body = rotate("auth_model")
    assert (status, body["error"]) == (409, "DeploymentInProgress")
    assert "d-running" in body["details"]
    assert [e["name"] for e in executions(sfn)] == ["d-running"]


# --- RotateToken's logic -----------------------------------------------------------------------

class AuthDriver:
    """Auth files in memory, the lock recorded."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.log: list[str] = []

    @contextlib.contextmanager
    def lock(self, model_name: str) -> Iterator[None]:
        self.log.append(f"lock {model_name}")
        yield
        self.log.append(f"unlock {model_name}")

    def read_auth(self, model_name: str) -> str | None:
        return self.files.get(model_name)

    def write_auth(self, model_name: str, text: str) -> None:
        self.log.append(f"write {model_name}")
        self.files[model_name] = text

    def update_auth(self, model_name: str, change: Any) -> str | None:
        new = change(self.files.get(model_name))
        if new is not None:
            self.write_auth(model_name, new)
        return self.files.get(model_name)


@pytest.fixture
def settings(tmp_path: Path, registry_uri: str) -> Settings:
    """auth_model v1 live on process; open_model v1 live; idle_model serves nothing."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)
    (tmp_path / "model").mkdir()
    for name in ("auth_model", "open_model", "idle_model"):
        client.create_registered_model(name)
        client.create_model_version(name, (tmp_path / "model").as_uri())
        if name != "idle_model":
            served.mark_live(client, model_name=name, version="1", image_uri="bundle:x",
                             inference_url=f"http://127.0.0.1:9/{name}", target="process",
                             deployment_id="d-1")
            client.set_registered_model_alias(name, "live", "1")
    return Settings(staging_uri=str(tmp_path), tracking_uri=registry_uri, cluster="process",
                    model_alias="live", rollout_timeout_seconds=60, rollout_poll_seconds=1,
                    state_machine_arn="", archive_dir="", home=tmp_path)


def event(name: str) -> token_rotation.RotateEvent:
    return token_rotation.RotateEvent.model_validate({
        "request": {"action": "rotate-token", "model_name": name}, "deployment_id": "d-rot"})


def token_file(token: str) -> str:
    delivered = auth.with_token(auth.AuthFile(open=False, entries=()), auth.digest(token),
                                pending=False)
    return auth.render(auth.with_smoke(delivered, auth.digest("tsk_smoke"), 2e9, 1e9))


def test_rotation_issues_a_delivered_token_and_the_old_one_stops(settings: Settings) -> None:
    driver = AuthDriver({"auth_model": token_file("tsk_old")})
    result = token_rotation.rotate_token(event("auth_model"), settings=settings,
                                         drivers=lambda target: driver)  # type: ignore
    new = result.inference_token
    assert new.startswith("tsk_") and new != "tsk_old"
    assert (result.action, result.auth, result.model_name, result.serving_name) == (
        "rotate-token", "token", "auth_model", "auth-model")
    assert result.inference_url == "http://127.0.0.1:9/auth_model"
    written = auth.parse(driver.files["auth_model"])
    assert auth.allows(written, new, 1e9) and auth.delivered(written)
    assert not auth.allows(written, "tsk_old", 1e9)
    assert auth.allows(written, "tsk_smoke", 1e9)  # a running smoke test's entry stays
    assert driver.log == ["lock auth_model", "write auth_model", "unlock auth_model"]


def test_refusals_change_nothing(settings: Settings) -> None:
    files = {"auth_model": token_file("tsk_old"), "open_model": auth.render(auth.open_file())}
    before = dict(files)
    driver = AuthDriver(files)

    def run(name: str, running: list[str] | None = None) -> Any:
        return token_rotation.rotate_token(event(name), settings=settings,
                                           drivers=lambda target: driver,  # type: ignore
                                           running=lambda: running or [])

    with pytest.raises(AuthNotEnabled) as open_url:
        run("open_model")
    assert open_url.value.step == "RotateToken" and "--auth token" in open_url.value.help
    files.pop("open_model")  # a model deployed before trainship had auth: no file at all
    with pytest.raises(AuthNotEnabled):
        run("open_model")
    with pytest.raises(ModelNotFound, match="serves nothing"):
        run("idle_model")
    with pytest.raises(ModelNotFound):
        run("no_such_model")
    with pytest.raises(DeploymentInProgress, match="d-deploying"):
        run("auth_model", running=["d-deploying"])
    assert files == {"auth_model": before["auth_model"]}
    assert not [line for line in driver.log if line.startswith("write")]
