"""The training runner's settings (config.TrainingSettings) and config.env_flag: read once
from the environment, passed down typed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainship import training
from trainship.config import TrainingSettings, env_flag


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "Yes", "on", " on "])
def test_env_flag_true(value: str) -> None:
    assert env_flag("X", {"X": value}) is True


@pytest.mark.parametrize("value", ["", "0", "false", "False", "no", "OFF"])
def test_env_flag_false(value: str) -> None:
    assert env_flag("X", {"X": value}) is False


def test_env_flag_unset_is_false_and_nonsense_is_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINSHIP_TEST_FLAG", raising=False)
    assert env_flag("TRAINSHIP_TEST_FLAG") is False
    monkeypatch.setenv("TRAINSHIP_TEST_FLAG", "1")
    assert env_flag("TRAINSHIP_TEST_FLAG") is True  # os.environ by default
    with pytest.raises(ValueError, match="X='maybe' is not a boolean"):
        env_flag("X", {"X": "maybe"})


def test_training_settings_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = TrainingSettings.from_env({})
    assert settings == TrainingSettings(
        tracking_uri="", run_id="", workdir=tmp_path / "work",
        env_cache=tmp_path / "home" / ".cache" / "trainship" / "envs")
    assert settings.proxied_artifacts_bucket is None and settings.kms_key_arn is None


def test_training_settings_read_every_variable(tmp_path: Path) -> None:
    settings = TrainingSettings.from_env({
        "MLFLOW_TRACKING_URI": "http://mlflow", "MLFLOW_RUN_ID": "r1",
        "TRAINSHIP_WORKDIR": str(tmp_path / "w"), "TRAINSHIP_ENV_CACHE": str(tmp_path / "e"),
        "TRAINSHIP_SCRIPT_ROLE_ARN": "arn:aws:iam::111122223333:role/script",
        "TRAINSHIP_MLFLOW_TRACKING_SERVER_ARN": "arn:server",
        "TRAINSHIP_MLFLOW_PROXIED_ARTIFACTS_BUCKET": "bucket",
        "TRAINSHIP_MLFLOW_ARTIFACT_KMS_KEY_ARN": "arn:key"})
    assert settings == TrainingSettings(
        tracking_uri="http://mlflow", run_id="r1", workdir=tmp_path / "w",
        env_cache=tmp_path / "e", script_role_arn="arn:aws:iam::111122223333:role/script",
        tracking_server_arn="arn:server", proxied_artifacts_bucket="bucket",
        kms_key_arn="arn:key")


def _stage_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "d-3").mkdir()
    job = {"deployment_id": "d-3", "model_name": "m", "experiment_name": "m",
           "script_uri": str(tmp_path / "d-3" / "train.py"), "script_sha256": "0" * 64,
           "requirements": [], "timeout_seconds": 10, "replicas": 1,
           "resources": {"cpu": "1", "memory": "1Gi"}}
    (tmp_path / "d-3" / "job.json").write_text(json.dumps(job))
    monkeypatch.setenv("TRAINSHIP_JOB_URI", str(tmp_path / "d-3" / "job.json"))
    return tmp_path / "d-3"


def test_main_reads_the_settings_once_and_passes_them_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stage_job(tmp_path, monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow")
    monkeypatch.setenv("MLFLOW_RUN_ID", "r7")
    monkeypatch.setenv("TRAINSHIP_WORKDIR", str(tmp_path / "w"))
    monkeypatch.setenv("TRAINSHIP_ENV_CACHE", str(tmp_path / "envs"))
    seen: list[TrainingSettings] = []
    finished: list[tuple[str, str, str]] = []
    monkeypatch.setattr(training, "run", lambda job, settings: seen.append(settings))
    monkeypatch.setattr(training, "finish_run", lambda *args: finished.append(args))
    assert training.main(["run"]) == 0
    [settings] = seen
    assert (settings.tracking_uri, settings.run_id) == ("http://mlflow", "r7")
    assert (settings.workdir, settings.env_cache) == (tmp_path / "w", tmp_path / "envs")
    assert finished == [("http://mlflow", "r7", "FINISHED")]


def test_run_without_a_run_id_is_a_runner_failure(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    staged = _stage_job(tmp_path, monkeypatch)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.setattr(training, "run", lambda *a: pytest.fail("ran without a run id"))
    assert training.main(["run"]) == 1
    doc = json.loads((staged / "error.json").read_text())
    assert (doc["error"], doc["step"]) == ("TrainingRunnerFailed", "TrainModel")
    assert "MLFLOW_RUN_ID" in doc["message"]
