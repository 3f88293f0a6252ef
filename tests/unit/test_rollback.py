"""Rollback's checks and PrepareRollback's state, on a real MLflow registry (sqlite), and the
promotion of a lower version (registry alias, PromoteModel)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FakeDriver, handle
from tests.helpers import state as make_state
from trainship import registry, rollback, served, steps
from trainship.config import Settings
from trainship.errors import (
    DeploymentInProgress,
    ImageNotFound,
    InvalidRequest,
    ModelNotFound,
    ModelVersionNotFound,
    TargetNotEnabled,
    TrainshipError,
    VersionAlreadyLive,
    VersionNeverServed,
)
from trainship.names import DEPLOYMENT_TAG
from trainship.state import RolloutState

MODEL = "test_model"


class Images:
    """An image registry that holds ``present``."""

    def __init__(self, *present: str) -> None:
        self.present = set(present)

    def pin(self, model_name: str, image_uri: str) -> str:
        return ""

    def exists(self, image_uri: str) -> bool:
        return image_uri in self.present


@pytest.fixture()
def uri(tmp_path: Path, registry_uri: str) -> str:
    """test_model v1 and v2 served (v2 live), v3 registered but never served."""
    from mlflow import MlflowClient

    uri = registry_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(MODEL)
    (tmp_path / "model").mkdir()
    for n in (1, 2, 3):
        client.create_model_version(MODEL, (tmp_path / "model").as_uri(), run_id=None,
                                    tags={DEPLOYMENT_TAG: f"d-{n}"})
    for n in (1, 2):
        served.mark_live(client, model_name=MODEL, version=str(n), image_uri=f"img@v{n}",
                         inference_url="http://127.0.0.1:9000", target="process",
                         deployment_id=f"d-{n}")
        client.set_registered_model_alias(MODEL, "live", str(n))
    return uri


def check(uri: str, version: str, *, images: Images | None = None, running: list[str] = (),
          model: str = MODEL) -> rollback.Plan:
    return rollback.check(registry.mlflow_client(uri), model_name=model, version=version,
                          alias="live", images=images or Images("img@v1", "img@v2"),
                          in_progress=lambda: list(running))


@pytest.mark.parametrize(("model", "version", "error"), [
    ("no_such_model", "1", ModelNotFound),
    ("bad name!", "1", ModelNotFound),
    (MODEL, "9", ModelVersionNotFound),
    (MODEL, "2", VersionAlreadyLive),
    (MODEL, "3", VersionNeverServed),
])
def test_each_refusal_has_its_own_error(uri: str, model: str, version: str,
                                        error: type[TrainshipError]) -> None:
    with pytest.raises(error) as caught:
        check(uri, version, model=model)
    assert 400 <= caught.value.http_status < 500 and caught.value.help


def test_a_running_execution_of_the_model_refuses_it(uri: str) -> None:
    with pytest.raises(DeploymentInProgress) as caught:
        check(uri, "1", running=["d-busy"])
    assert "d-busy" in caught.value.details


def test_an_expired_image_refuses_it(uri: str) -> None:
    with pytest.raises(ImageNotFound) as caught:
        check(uri, "1", images=Images("img@v2"))
    assert caught.value.details == "img@v1"


def test_a_served_version_with_its_image_passes(uri: str) -> None:
    plan = check(uri, "1")
    assert plan.live_version == "2" and plan.version.image_uri == "img@v1"
    # refusals changed nothing: v2 keeps the alias
    assert rollback.live_version(registry.mlflow_client(uri), MODEL, "live") == "2"


def test_the_request_body_is_a_version(uri: str) -> None:
    assert rollback.parse(rollback.RollbackRequest, {"version": 1}).version == "1"
    for bad in ({"version": "x"}, {"version": "0"}, {}, {"version": "1", "more": 1}, None,
                {"version": True}):
        with pytest.raises(InvalidRequest):
            rollback.parse(rollback.RollbackRequest, bad)


def test_prepare_hands_deploy_model_the_version_and_its_image(uri: str,
                                                              tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    job = make_state(tmp_path, model={"name": MODEL, "version": "1", "run_id": "r1",
                                      "model_uri": "models:/m-1", "source": "s1"},
                     requirements=["scikit-learn==1.6.1"], replicas=3, debug=True)
    (staging / "d-1").mkdir(parents=True)
    (staging / "d-1" / "job.json").write_text(json.dumps(job.out()))
    state = rollback.prepare(
        {"action": "rollback", "model_name": MODEL, "version": "1"}, deployment_id="d-rb",
        started_at="2026-12-06T10:00:00Z", staging_uri=str(staging), tracking_uri=uri,
        alias="live", targets=("process",), images=Images("img@v1"))
    assert state.deployment_id == "d-rb" and state.target == "process"
    assert state.image is not None and state.image.variable("IMAGE_URI") == "img@v1"
    assert state.model is not None and state.model.model_uri == "models:/m-1"
    assert state.requirements == ["scikit-learn==1.6.1"] and state.replicas == 3
    assert state.rollback is not None and state.rollback.replaced_version == "2"
    assert state.serving_name == "test-model"
    assert state.debug is True  # as the version was deployed
    # without the job document (expired staging): the registry's version, defaults
    shutil.rmtree(staging)
    state = rollback.prepare(
        {"action": "rollback", "model_name": MODEL, "version": "1"}, deployment_id="d-rb",
        started_at="", staging_uri=str(staging), tracking_uri=uri, alias="live",
        targets=("process",), images=Images("img@v1"))
    assert state.model is not None and state.model.version == "1" and state.replicas == 1
    assert state.debug is False


def test_prepare_checks_again(uri: str, tmp_path: Path) -> None:
    common: dict[str, Any] = {"deployment_id": "d", "started_at": "", "alias": "live",
                              "staging_uri": str(tmp_path), "tracking_uri": uri}
    with pytest.raises(VersionAlreadyLive):
        rollback.prepare({"action": "rollback", "model_name": MODEL, "version": "2"},
                         targets=("process",), images=Images("img@v2"), **common)
    with pytest.raises(ImageNotFound):
        rollback.prepare({"action": "rollback", "model_name": MODEL, "version": "1"},
                         targets=("process",), images=Images(), **common)
    with pytest.raises(TargetNotEnabled):
        rollback.prepare({"action": "rollback", "model_name": MODEL, "version": "1"},
                         targets=("kubernetes",), images=Images("img@v1"), **common)
    with pytest.raises(InvalidRequest):
        rollback.prepare({"action": "delete", "model_name": MODEL, "version": "1"},
                         targets=("process",), images=Images("img@v1"), **common)


def test_the_alias_moves_down_only_for_a_rollback(uri: str) -> None:
    assert not registry.promote(tracking_uri=uri, model_name=MODEL, version="1", alias="live")
    assert rollback.live_version(registry.mlflow_client(uri), MODEL, "live") == "2"
    assert registry.promote(tracking_uri=uri, model_name=MODEL, version="1", alias="live",
                            replace_higher=True)
    assert rollback.live_version(registry.mlflow_client(uri), MODEL, "live") == "1"


class RecordingDriver(FakeDriver):
    def __init__(self) -> None:
        super().__init__([])
        self.replace_higher: list[bool] = []

    def promote(self, handle: Any, *, replace_higher: bool = False) -> str | None:
        self.replace_higher.append(replace_higher)
        return None


def test_promote_model_passes_the_rollback_on(uri: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    settings = Settings.from_env()
    for is_rollback in (False, True):
        state = make_state(
            tmp_path, model_name=MODEL,
            model={"name": MODEL, "version": "1", "run_id": "r", "model_uri": "m",
                   "source": "s"},
            rollout=RolloutState(handle=handle("1"), image_uri="img@v1",
                                 inference_url="http://h").model_dump(),
            rollback={"replaced_version": "2"} if is_rollback else None)
        driver = RecordingDriver()
        done = steps.promote_model(state, settings=settings, driver=driver,  # type: ignore[arg-type]
                                   pins=Images())
        assert driver.replace_higher == [is_rollback]
        assert done.result is not None
    client = registry.mlflow_client(uri)
    assert rollback.live_version(client, MODEL, "live") == "1"
    by_version = {v.version: v for v in served.versions(client, MODEL)}
    assert by_version["1"].periods[-1]["to"] is None
    assert by_version["2"].periods[-1]["to"] is not None
