"""trainship.config.env_flag and CliSettings: what the command line reads from the
environment, read once."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainship import cli, terminal
from trainship.config import CliSettings, env_flag


@pytest.mark.parametrize("value", ["", "0", "false", "False", "no", "off", " OFF "])
def test_false_words_are_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TRAINSHIP_TEST_FLAG", value)
    assert env_flag("TRAINSHIP_TEST_FLAG") is False


@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "TRUE", " On "])
def test_true_words_are_on(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TRAINSHIP_TEST_FLAG", value)
    assert env_flag("TRAINSHIP_TEST_FLAG") is True


@pytest.mark.parametrize("value", ["2", "maybe", "enabled"])
def test_other_values_are_refused_by_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TRAINSHIP_TEST_FLAG", value)
    with pytest.raises(ValueError, match="TRAINSHIP_TEST_FLAG"):
        env_flag("TRAINSHIP_TEST_FLAG")


def test_the_cli_refuses_a_debug_value_it_cannot_read(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRAINSHIP_DEBUG", "maybe")
    assert cli.main(["status", "d-1", "--api", "http://127.0.0.1:1"]) == terminal.EXIT_USAGE
    err = capsys.readouterr().err
    assert "TRAINSHIP_DEBUG='maybe' is not a boolean" in err and "Traceback" not in err


def test_an_unset_flag_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINSHIP_TEST_FLAG", raising=False)
    assert env_flag("TRAINSHIP_TEST_FLAG") is False


def test_cli_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRAINSHIP_API", "TRAINSHIP_DEBUG", "TRAINSHIP_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert CliSettings.from_env() == CliSettings(api="", debug=False,
                                                 home=Path(".trainship"))
    monkeypatch.setenv("TRAINSHIP_API", "http://127.0.0.1:8000")
    monkeypatch.setenv("TRAINSHIP_DEBUG", "1")
    monkeypatch.setenv("TRAINSHIP_HOME", "/tmp/somewhere")
    assert CliSettings.from_env() == CliSettings(api="http://127.0.0.1:8000", debug=True,
                                                 home=Path("/tmp/somewhere"))
