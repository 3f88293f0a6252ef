"""The inference service's settings (trainship.serving.settings): its environment read
once, flags overriding it, and the model it serves labelled in /metrics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from trainship.config import env_flag
from trainship.serving import cli, metrics
from trainship.serving.settings import ServingSettings, flag

SERVING_ENV = ("TRAINSHIP_SERVING_WORKERS", "TRAINSHIP_MAX_BATCH_ROWS", "TRAINSHIP_MAX_WAIT_MS",
               "TRAINSHIP_LOAD_CACHE", "TRAINSHIP_KEEP_WARNING_FILTERS",
               "TRAINSHIP_MODEL_NAME", "TRAINSHIP_MODEL_VERSION")


@pytest.fixture()
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the command line hands to ``serve`` (which is not run), from a clean
    environment."""
    for name in SERVING_ENV:
        monkeypatch.delenv(name, raising=False)
    seen: dict[str, Any] = {}

    def serve(model_dir: Path, host: str, port: int, **options: Any) -> int:
        seen.update(options, model_dir=model_dir, host=host, port=port)
        return 0

    monkeypatch.setattr(cli, "serve", serve)
    monkeypatch.setattr(cli, "set_keras_backend", lambda model_dir: None)
    return seen


def test_defaults() -> None:
    assert ServingSettings.from_env({}) == ServingSettings(
        workers=0, max_batch_rows=256, max_wait_ms=2.0, load_cache=None,
        keep_warning_filters=False, model_name="", model_version="")
    assert ServingSettings.from_env({}).model_info() == {}


def test_every_variable() -> None:
    settings = ServingSettings.from_env({
        "TRAINSHIP_SERVING_WORKERS": "3", "TRAINSHIP_MAX_BATCH_ROWS": "1",
        "TRAINSHIP_MAX_WAIT_MS": "0.5", "TRAINSHIP_LOAD_CACHE": "/opt/cache.pkl",
        "TRAINSHIP_KEEP_WARNING_FILTERS": "true", "TRAINSHIP_MODEL_NAME": "Iris.v2",
        "TRAINSHIP_MODEL_VERSION": "7"})
    assert settings == ServingSettings(
        workers=3, max_batch_rows=1, max_wait_ms=0.5, load_cache=Path("/opt/cache.pkl"),
        keep_warning_filters=True, model_name="Iris.v2", model_version="7")
    assert settings.model_info() == {"model_name": "Iris.v2", "model_version": "7"}


@pytest.mark.parametrize("value, expected", [("0", False), ("false", False), ("no", False),
                                             ("off", False), ("", False), ("1", True),
                                             ("True", True), ("yes", True), ("ON", True)])
def test_keep_warning_filters_is_a_real_boolean(value: str, expected: bool) -> None:
    """``TRAINSHIP_KEEP_WARNING_FILTERS=0`` used to turn the option on (a non-empty
    string)."""
    env = {"TRAINSHIP_KEEP_WARNING_FILTERS": value}
    assert ServingSettings.from_env(env).keep_warning_filters is expected


@pytest.mark.parametrize("value", ["", "0", "1", "true", "FALSE", "Yes", "no", " on ", "off",
                                   "2", "maybe", "y"])
def test_the_services_flag_rules_are_configs(value: str) -> None:
    """The image ships the service alone, so it keeps its own copy of config.env_flag."""
    def outcome(parse: Any) -> object:
        try:
            return parse("X", {"X": value})
        except ValueError as exc:
            return str(exc)

    assert outcome(flag) == outcome(env_flag)


def test_malformed_values_name_their_variable() -> None:
    with pytest.raises(ValueError, match="TRAINSHIP_MAX_BATCH_ROWS='lots' is not a number"):
        ServingSettings.from_env({"TRAINSHIP_MAX_BATCH_ROWS": "lots"})
    with pytest.raises(ValueError, match="TRAINSHIP_KEEP_WARNING_FILTERS='maybe'"):
        ServingSettings.from_env({"TRAINSHIP_KEEP_WARNING_FILTERS": "maybe"})


def test_the_command_line_takes_its_defaults_from_the_environment(
        served: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINSHIP_KEEP_WARNING_FILTERS", "0")
    monkeypatch.setenv("TRAINSHIP_MAX_BATCH_ROWS", "8")
    monkeypatch.setenv("TRAINSHIP_SERVING_WORKERS", "2")
    monkeypatch.setenv("TRAINSHIP_LOAD_CACHE", "/tmp/lc.pkl")
    monkeypatch.setenv("TRAINSHIP_MODEL_NAME", "churn")
    monkeypatch.setenv("TRAINSHIP_MODEL_VERSION", "4")
    assert cli.main(["--model-dir", "/m"]) == 0
    assert served["keep_warning_filters"] is False
    assert (served["max_batch_rows"], served["workers"]) == (8, 2)
    assert served["load_cache"] == Path("/tmp/lc.pkl")
    assert served["model_info"] == {"model_name": "churn", "model_version": "4"}


def test_flags_override_the_environment(served: dict[str, Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINSHIP_KEEP_WARNING_FILTERS", "1")
    monkeypatch.setenv("TRAINSHIP_MAX_BATCH_ROWS", "8")
    assert cli.main(["--model-dir", "/m", "--no-keep-warning-filters",
                     "--max-batch-rows", "1"]) == 0
    assert (served["keep_warning_filters"], served["max_batch_rows"]) == (False, 1)
    monkeypatch.setenv("TRAINSHIP_KEEP_WARNING_FILTERS", "0")
    assert cli.main(["--model-dir", "/m", "--keep-warning-filters"]) == 0
    assert served["keep_warning_filters"] is True
    assert served["model_info"] == {}


def test_a_malformed_variable_is_a_usage_error(served: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRAINSHIP_MAX_WAIT_MS", "soon")
    with pytest.raises(SystemExit) as exc:
        cli.main(["--model-dir", "/m"])
    assert exc.value.code == 2 and not served
    assert "TRAINSHIP_MAX_WAIT_MS='soon' is not a number" in capsys.readouterr().err


def _model_info(render: bytes) -> list[dict[str, str]]:
    """The labels of ``trainship_model_info`` (the text format has no info type:
    prometheus_client writes an Info as a gauge named ``<name>_info``, always 1)."""
    return [sample.labels for family in text_string_to_metric_families(render.decode())
            if family.name == "trainship_model_info" for sample in family.samples
            if sample.value == 1.0]


def test_the_model_served_is_an_info_metric(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.ENV, raising=False)
    directory = metrics.create_directory(tmp_path)
    try:
        labelled = metrics.Metrics(directory, model_info={"model_name": "churn",
                                                          "model_version": "4"})
        assert _model_info(labelled.render()) == [{"model_name": "churn",
                                                   "model_version": "4"}]
        assert b'trainship_model_info{model_name="churn",model_version="4"} 1.0' \
            in labelled.render()
        assert _model_info(metrics.Metrics(directory).render()) == []
    finally:
        metrics.remove_directory(directory)


def test_a_metrics_directory_is_stale_only_when_no_server_holds_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two servers sharing a temporary directory (containers of one pod, both pid 1) must
    not remove each other's directory; one left by a server that is gone goes."""
    monkeypatch.delenv(metrics.ENV, raising=False)
    alive = metrics.create_directory(tmp_path)
    # a server elsewhere with the same pid (another PID namespace) starts: same name prefix
    second = metrics.create_directory(tmp_path)
    try:
        assert alive.is_dir() and second.is_dir()  # the pid in the name decides nothing
        dead = tmp_path / f"{metrics.DIR_PREFIX}999999-x"
        dead.mkdir()
        (dead / metrics.OWNER_LOCK).touch()  # its server died: nobody holds the lock
        unknown = tmp_path / f"{metrics.DIR_PREFIX}{os.getpid()}-y"
        unknown.mkdir()  # no lock file (an older server): its pid is alive, left alone
        third = metrics.create_directory(tmp_path)
        metrics.remove_directory(third)
        assert not dead.exists() and unknown.exists() and alive.is_dir()
    finally:
        metrics.remove_directory(second)
        metrics.remove_directory(alive)
    assert not alive.exists()
