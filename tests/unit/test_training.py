from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainship import envs, training
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


REPO = Path(__file__).resolve().parents[2]


def test_run_script_streams_and_times_out(tmp_path: Path) -> None:
    """The script's output is kept as it comes, and the timeout ends the script (and its
    process group) with ScriptTimeout carrying that output. The budget is the script's own:
    the bootstrap imports nothing heavy (MLflow) before the script starts, which used to eat
    a 3 s budget on a loaded machine."""
    script = tmp_path / "s.py"
    marker = tmp_path / "survived"
    script.write_text("import os,sys,time\n"
                      "print('run', os.environ['MLFLOW_RUN_ID'], 'mlflow' in sys.modules, "
                      "flush=True)\n"
                      f"time.sleep(30)\nopen({str(marker)!r}, 'w').close()\n")
    env = training.script_environment({"PATH": "/usr/bin", "AWS_SECRET_ACCESS_KEY": "s3cr3t"},
                                      tracking_uri="http://x", run_id="r1",
                                      experiment_name="e")
    assert "AWS_SECRET_ACCESS_KEY" not in env
    env["PYTHONPATH"] = str(REPO)
    out = io.StringIO()
    started = time.monotonic()
    with pytest.raises(ScriptTimeout) as caught:
        training.run_script(sys.executable, script, env, timeout_seconds=3, out=out)
    assert time.monotonic() - started < 20
    assert "run r1 False" in caught.value.details
    assert "run r1 False" in out.getvalue()
    assert not marker.exists()


def test_the_bootstrap_patches_mlflow_sklearn_when_the_script_imports_it(tmp_path: Path
                                                                         ) -> None:
    script = tmp_path / "s.py"
    script.write_text("import sys\nprint('before', 'mlflow' in sys.modules)\n"
                      "import mlflow\n"
                      "print('patched', getattr(mlflow.sklearn.save_model, "
                      "'__trainship_patched__', False))\n")
    env = {"PATH": "/usr/bin", "PYTHONPATH": str(REPO)}
    code, output = training.run_script(sys.executable, script, env, timeout_seconds=300,
                                       out=io.StringIO())
    assert code == 0, output
    assert "before False" in output and "patched True" in output


def test_a_failed_script_shows_its_own_frames(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("import json\n\n\ndef load(text):\n    return json.loads(text)\n\n\n"
                      "load('{nope')\n")
    env = {"PATH": "/usr/bin", "PYTHONPATH": str(REPO)}
    code, output = training.run_script(sys.executable, script, env, timeout_seconds=60,
                                       out=io.StringIO())
    assert code == 1
    doc = training.classify_failure(code, output)
    assert isinstance(doc, ScriptFailed)
    frames = [line.strip() for line in doc.details.splitlines()
              if line.strip().startswith("File ")]
    assert frames[:2] == ['File "train.py", line 8, in <module>',
                          'File "train.py", line 5, in load'], doc.details
    assert "runpy" not in doc.details and "bootstrap" not in doc.details
    assert str(tmp_path) not in doc.details
    assert doc.details.rstrip().endswith("(char 1)")


def test_output_of_hundreds_of_mb_is_capped_in_the_log_and_in_memory(tmp_path: Path) -> None:
    """300 MB of output (lines, then one 40 MB line) through the runner: what reaches the
    build log is the head and the end, and the runner's own peak memory stays far below the
    output's size."""
    script = tmp_path / "s.py"
    script.write_text("import sys\nline = 'x' * 1023 + '\\n'\nblock = line * 1024\n"
                      "for _ in range(260):\n    sys.stdout.write(block)\n"
                      "sys.stdout.write('y' * (40 << 20) + '\\n')\nprint('THE END')\n")
    runner = tmp_path / "runner.py"
    runner.write_text(
        "import sys\nfrom pathlib import Path\nfrom trainship import training\n"
        "log = open(sys.argv[2], 'w')\n"
        "code, kept = training.run_script(sys.executable, Path(sys.argv[1]), "
        "{'PATH': '/usr/bin', 'PYTHONPATH': sys.argv[3]}, 300, out=log)\n"
        "log.close()\n"
        # VmHWM, this program's own peak: ru_maxrss would carry the spawning process's
        # peak across vfork+exec on Linux (pytest's, late in a long run)
        "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') "
        "if l.startswith('VmHWM:'))\n"
        "print(code, len(kept), hwm, kept.rstrip().endswith('THE END'))\n")
    log = tmp_path / "build.log"
    proc = subprocess.run([sys.executable, str(runner), str(script), str(log), str(REPO)],
                          capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, kept, peak_kib, ends = proc.stdout.split()
    assert (code, ends) == ("0", "True"), (proc.stdout, log.read_text()[-2000:])
    assert int(kept) <= training.KEPT_TAIL_CHARS
    assert int(peak_kib) < 200 * 1024, f"runner peaked at {int(peak_kib) // 1024} MiB"
    size = log.stat().st_size
    assert size < training.STREAM_HEAD_CHARS + training.KEPT_TAIL_CHARS + 10_000
    text = log.read_text()
    assert "the rest is not streamed" in text and "were not kept" in text
    assert text.rstrip().endswith("THE END")


def test_output_keeper_streams_all_of_a_small_output() -> None:
    out = io.StringIO()
    keeper = training.OutputKeeper(out, head_chars=100, tail_chars=50)
    for part in (b"abc\n", "d\u00e9".encode()[:2], "d\u00e9".encode()[2:], b"\n"):
        keeper.feed(part)
    keeper.finish()
    assert out.getvalue() == "abc\nd\u00e9\n" and keeper.text() == "abc\nd\u00e9\n"


def test_output_keeper_keeps_head_and_tail() -> None:
    out = io.StringIO()
    keeper = training.OutputKeeper(out, head_chars=25, tail_chars=30)
    for i in range(100):
        keeper.feed(f"line {i:03d}\n".encode())
    keeper.finish()
    text = out.getvalue()
    assert text.startswith("line 000\nline 001\nline 00\n[trainship] the script's output "
                           "passed 25 characters")
    assert "line 050" not in text
    assert text.rstrip().endswith("line 098\nline 099")
    assert keeper.text().endswith("line 099\n") and len(keeper.text()) <= 30
    assert keeper.omitted == 100 * 9 - 25


def test_the_script_environment_tags_what_mlflow_creates_with_the_deployment() -> None:
    env = training.script_environment({"PATH": "/usr/bin", "MLFLOW_RUN_CONTEXT": "{}"},
                                      tracking_uri="http://x", run_id="r1",
                                      experiment_name="e", deployment_id="d-1")
    assert json.loads(env["MLFLOW_RUN_CONTEXT"]) == {"trainship.deployment_id": "d-1"}


def test_run_script_returns_status_and_output(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("import sys\nprint('hello')\nsys.exit(4)\n")
    env = {"PATH": "/usr/bin", "PYTHONPATH": str(REPO)}
    code, output = training.run_script(sys.executable, script, env, timeout_seconds=60,
                                       out=io.StringIO())
    assert code == 4 and "hello" in output


def test_env_key_ignores_order() -> None:
    assert envs.env_key(["a", "b"]) == envs.env_key(["b", "a"])
    assert envs.env_key(["a"]) != envs.env_key(["a", "b"])


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


def test_a_crash_of_the_runner_is_not_the_scripts_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script_uri = str(tmp_path / "d-2" / "train.py")
    (tmp_path / "d-2").mkdir()
    job = {"deployment_id": "d-2", "model_name": "m", "experiment_name": "m",
           "script_uri": script_uri, "script_sha256": "0" * 64, "requirements": [],
           "timeout_seconds": 10, "replicas": 1, "resources": {"cpu": "1", "memory": "1Gi"}}
    (tmp_path / "d-2" / "job.json").write_text(json.dumps(job))
    monkeypatch.setenv("TRAINSHIP_JOB_URI", str(tmp_path / "d-2" / "job.json"))
    monkeypatch.setenv("MLFLOW_RUN_ID", "r")

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("runner bug")

    monkeypatch.setattr(training, "run", crash)
    assert training.main(["run"]) == 1
    doc = json.loads((tmp_path / "d-2" / "error.json").read_text())
    assert (doc["error"], doc["step"]) == ("TrainingRunnerFailed", "TrainModel")
    assert "runner bug" in doc["message"] and "RuntimeError" in doc["details"]


@pytest.mark.pip
def test_requirements_env_is_built_once_and_cached(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    python = envs.prepare_environment(["six"], tmp_path)
    env_dir = Path(python).parents[1]
    assert (env_dir / ".complete").exists()
    assert env_dir.name == envs.env_key(["six"])
    marker = (env_dir / ".complete").stat().st_mtime_ns
    capsys.readouterr()
    assert envs.prepare_environment(["six"], tmp_path) == python
    assert (env_dir / ".complete").stat().st_mtime_ns == marker
    said = capsys.readouterr().out
    assert "is cached: nothing to install" in said and "installing" not in said
    assert envs.prepare_environment([], tmp_path) == sys.executable


@pytest.mark.pip
def test_requirements_env_sees_mlflow_of_a_virtualenv_runner(tmp_path: Path) -> None:
    """The runner runs in a venv (the local stack, a pip-installed CLI): a script with
    requirements must still import MLflow, which lives in that venv, not the base Python."""
    assert sys.prefix != sys.base_prefix, "the test suite runs in the project's venv"
    python = envs.prepare_environment(["six"], tmp_path)
    probe = subprocess.run([python, "-c", "import mlflow, six; print(mlflow.__file__)"],
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).is_relative_to(sys.prefix)


@pytest.mark.pip
def test_requirements_that_do_not_install(tmp_path: Path) -> None:
    from trainship.errors import RequirementsInstallFailed

    with pytest.raises(RequirementsInstallFailed) as caught:
        envs.prepare_environment(["trainship-surely-no-such-package==0.0.1"], tmp_path)
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
