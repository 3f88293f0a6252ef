from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainship import training
from trainship.errors import MissingRequirement, ScriptFailed, ScriptSyntaxError, ScriptTimeout


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(ScriptSyntaxError) as caught:
        training.check_syntax("x = 1\ndef f(:\n    pass\n")
    assert "line 2" in caught.value.message
    assert "def f(:" in caught.value.details


def test_missing_module_is_missing_requirement() -> None:
    output = ("Traceback (most recent call last):\n  File \"train.py\", line 1, in <module>\n"
              "ModuleNotFoundError: No module named 'xgboost'\n")
    exc = training.classify_failure(1, output)
    assert isinstance(exc, MissingRequirement)
    assert "xgboost" in exc.message and "xgboost" in exc.help


def test_exception_and_exit_status() -> None:
    exc = training.classify_failure(1, "Traceback (most recent call last):\n"
                                       "ValueError: bad data\n")
    assert isinstance(exc, ScriptFailed) and "ValueError: bad data" in exc.message
    exc = training.classify_failure(3, "done\n")
    assert isinstance(exc, ScriptFailed) and "status 3" in exc.message


def test_run_script_streams_and_times_out(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("import os,time\nprint('run', os.environ['MLFLOW_RUN_ID'], flush=True)\n"
                      "time.sleep(30)\n")
    env = training.script_environment({"PATH": "/usr/bin", "AWS_SECRET_ACCESS_KEY": "s3cr3t"},
                                      tracking_uri="http://x", run_id="r1",
                                      experiment_name="e")
    assert "AWS_SECRET_ACCESS_KEY" not in env
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    with pytest.raises(ScriptTimeout) as caught:
        training.run_script(sys.executable, script, env, timeout_seconds=3)
    assert "run r1" in caught.value.details


def test_run_script_returns_status_and_output(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("import sys\nprint('hello')\nsys.exit(4)\n")
    env = {"PATH": "/usr/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    code, output = training.run_script(sys.executable, script, env, timeout_seconds=60)
    assert code == 4 and "hello" in output


def test_env_key_ignores_order() -> None:
    assert training.env_key(["a", "b"]) == training.env_key(["b", "a"])
    assert training.env_key(["a"]) != training.env_key(["a", "b"])


def test_error_is_staged_beside_the_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    script_uri = str(tmp_path / "d-1" / "train.py")
    (tmp_path / "d-1").mkdir()
    Path(script_uri).write_text("def f(:\n")
    job = {"deployment_id": "d-1", "model_name": "m", "experiment_name": "m",
           "script_uri": script_uri, "script_sha256": "0" * 64, "requirements": [],
           "timeout_seconds": 10, "replicas": 1, "resources": {"cpu": "1", "memory": "1Gi"}}
    (tmp_path / "d-1" / "job.json").write_text(json.dumps(job))
    monkeypatch.setenv("TRAINSHIP_JOB_URI", str(tmp_path / "d-1" / "job.json"))
    monkeypatch.setenv("MLFLOW_RUN_ID", "r")
    monkeypatch.setattr(training, "finish_run", lambda *a: None)
    assert training.main(["run"]) == 1
    doc = json.loads((tmp_path / "d-1" / "error.json").read_text())
    assert doc["error"] == "ScriptSyntaxError" and doc["step"] == "TrainModel"


def test_requirements_env_is_built_once_and_cached(tmp_path: Path) -> None:
    python = training.prepare_environment(["six"], tmp_path)
    env_dir = Path(python).parents[1]
    assert (env_dir / ".complete").exists()
    assert env_dir.name == training.env_key(["six"])
    marker = (env_dir / ".complete").stat().st_mtime_ns
    assert training.prepare_environment(["six"], tmp_path) == python
    assert (env_dir / ".complete").stat().st_mtime_ns == marker
    assert training.prepare_environment([], tmp_path) == sys.executable


def test_requirements_env_sees_mlflow_of_a_virtualenv_runner(tmp_path: Path) -> None:
    """The runner runs in a venv (the local stack, a pip-installed CLI): a script with
    requirements must still import MLflow, which lives in that venv, not the base Python."""
    assert sys.prefix != sys.base_prefix, "the test suite runs in the project's venv"
    python = training.prepare_environment(["six"], tmp_path)
    probe = subprocess.run([python, "-c", "import mlflow, six; print(mlflow.__file__)"],
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).is_relative_to(sys.prefix)


def test_requirements_that_do_not_install(tmp_path: Path) -> None:
    from trainship.errors import RequirementsInstallFailed

    with pytest.raises(RequirementsInstallFailed) as caught:
        training.prepare_environment(["trainship-surely-no-such-package==0.0.1"], tmp_path)
    assert "trainship-surely-no-such-package" in caught.value.details


def test_experiment_creation_race_is_tolerated() -> None:
    from mlflow.exceptions import MlflowException

    class Racing:
        def __init__(self) -> None:
            self.calls = 0

        def get_experiment_by_name(self, name: str) -> object:
            self.calls += 1
            if self.calls == 1:
                return None  # not there yet ...

            class Experiment:
                experiment_id = "42"

            return Experiment()  # ... created by a concurrent deployment meanwhile

        def create_experiment(self, name: str) -> str:
            raise MlflowException("Experiment(name=crowd) already exists")

    assert training.experiment_id_for(Racing(), "crowd") == "42"
