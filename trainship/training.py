"""The training runner that buildspecs/train.yml calls.

``python -m trainship.training create-run`` creates the MLflow run first (tagged with the
deployment id) and prints its id; ``python -m trainship.training run`` installs the
requirements into an environment cached by their hash, runs the script bound to that run
under the timeout, streams its log (the first STREAM_HEAD_CHARS, then its end: a script
printing gigabytes neither fills the build log nor the runner's memory), and classifies
failures. On failure it
stages the error document next to the script and exits 1, so the build (and the
TrainModel state) fails and RecordFailure reports the precise error.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from trainship import envs, script_access, staging
from trainship.config import TrainingSettings
from trainship.errors import (
    MissingRequirement,
    ScriptFailed,
    ScriptSyntaxError,
    ScriptTimeout,
    TrainingBuildFailed,
    TrainingRunnerFailed,
    TrainshipError,
    TransientError,
    tail,
)
from trainship.names import DEPLOYMENT_TAG
from trainship.redaction import is_secret
from trainship.request import NormalizedRequest
from trainship.script_access import CredentialsEndpoint

STEP = "TrainModel"
# The script's output streamed to the build log as it comes; past this, only its end
# (KEPT_TAIL_CHARS, also what failures are classified from) is printed when it exits.
STREAM_HEAD_CHARS = 8 << 20
KEPT_TAIL_CHARS = 256 << 10
READ_CHUNK_BYTES = 64 << 10


def load_job() -> NormalizedRequest:
    """The deployment's job document, staged by ValidateRequest at TRAINSHIP_JOB_URI."""
    return NormalizedRequest.model_validate_json(staging.read_job())


def check_syntax(source: str, filename: str = "train.py") -> None:
    try:
        compile(source, filename, "exec")
    except SyntaxError as exc:
        line = (exc.text or "").rstrip("\n")
        pointer = " " * max((exc.offset or 1) - 1, 0) + "^"
        raise ScriptSyntaxError(
            f"{filename} line {exc.lineno}: {exc.msg}",
            details=f'  File "{filename}", line {exc.lineno}\n    {line}\n    {pointer}\n'
                    f"SyntaxError: {exc.msg}") from exc


# --- MLflow run binding --------------------------------------------------------------

def experiment_id_for(client: Any, name: str) -> str:
    """The experiment's id, creating it if needed (concurrent creators may race)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:
        experiment = client.get_experiment_by_name(name)  # a concurrent deployment won
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def create_run(job: NormalizedRequest, tracking_uri: str, attempts: int = 4) -> str:
    """Create the run the script will attach to; return its id."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri)
    for attempt in range(attempts):
        try:
            experiment_id = experiment_id_for(client, job.experiment_name)
            run = client.create_run(experiment_id, run_name=f"trainship-{job.deployment_id}",
                                    tags={DEPLOYMENT_TAG: job.deployment_id,
                                          "trainship.model_name": job.model_name,
                                          "trainship.script_sha256": job.script_sha256,
                                          "mlflow.source.name": "train.py"})
            return str(run.info.run_id)
        except MlflowException as exc:
            if attempt == attempts - 1:
                raise TransientError(f"MLflow at {tracking_uri} refused to create the run",
                                     details=str(exc), step=STEP) from exc
            time.sleep(0.5 * 2 ** attempt)
    raise AssertionError("unreachable")


def finish_run(tracking_uri: str, run_id: str, status: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    if run.info.status in ("RUNNING", "SCHEDULED"):
        client.set_terminated(run_id, status=status)


# --- running the script --------------------------------------------------------------

def script_environment(base: dict[str, str], *, tracking_uri: str, run_id: str,
                       experiment_name: str, deployment_id: str = "",
                       credentials: dict[str, str] | None = None) -> dict[str, str]:
    """The script's environment: the build's minus its secrets and credentials, plus the
    run binding and (``credentials``) the script's own container-credentials endpoint.

    ``MLFLOW_RUN_CONTEXT`` (MLflow's own variable: tags for what the client creates) tags
    every LoggedModel the script logs with the deployment id, including one MLflow 3 logs
    with no run at all (``log_model`` before any fluent call), which RegisterModel then
    finds in the experiment by that tag."""
    env = {k: v for k, v in base.items() if not is_secret(k)}
    env.pop("MLFLOW_RUN_CONTEXT", None)
    env.update({
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_RUN_ID": run_id,
        "MLFLOW_EXPERIMENT_NAME": experiment_name,
        "PYTHONUNBUFFERED": "1",
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance credentials either
        # nor the runner's shared files: the script's only credentials are its session
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
    })
    for key, value in TELEMETRY_ENV.items():
        env.setdefault(key, value)
    if deployment_id:
        env["MLFLOW_RUN_CONTEXT"] = json.dumps({DEPLOYMENT_TAG: deployment_id})
    env.update(credentials or {})
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    return env


def script_credentials(settings: TrainingSettings,
                       deployment_id: str) -> CredentialsEndpoint | None:
    """The script's own STS session, served on a loopback container-credentials endpoint.

    The runner (build role) assumes the script role with a session policy naming this
    deployment's run and artifact prefixes, read from MLflow now. Without a script role
    (TRAINSHIP_SCRIPT_ROLE_ARN) the script gets no AWS credentials at all."""
    role_arn, tracking_uri, run_id = (settings.script_role_arn, settings.tracking_uri,
                                      settings.run_id)
    if not role_arn:
        print("[trainship] no script role configured: the script runs without AWS "
              "credentials", flush=True)
        return None
    import boto3
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    mlflow_run = client.get_run(run_id)
    location = client.get_experiment(mlflow_run.info.experiment_id).artifact_location
    server_arn = (tracking_uri if tracking_uri.startswith("arn:")
                  else settings.tracking_server_arn)
    if not server_arn:
        raise ScriptFailed(f"No tracking server ARN for {tracking_uri}: set "
                           f"{script_access.TRACKING_SERVER_ARN_ENV}", step=STEP)
    policy = script_access.session_policy(
        tracking_server_arn=server_arn,
        prefixes=script_access.run_artifact_prefixes(location, run_id,
                                                     settings.proxied_artifacts_bucket),
        kms_key_arn=settings.kms_key_arn)
    session = script_access.ScriptSession(
        boto3.client("sts"), role_arn, policy,
        re.sub(r"[^\w+=,.@-]", "-", f"trainship-{deployment_id}"))
    try:
        session.credentials()  # an AssumeRole refusal fails here, as the build's error
    except Exception as exc:  # botocore's errors, reported as the build's error document
        raise TrainingBuildFailed(
            f"The training runner could not assume the script role {role_arn}",
            details=f"{type(exc).__name__}: {exc}", step=STEP,
            help="The build role needs sts:AssumeRole on the script role, and the script "
                 "role must trust it (see docs/deploy-to-aws.md, What runs with which "
                 "credentials).") from exc
    print(f"[trainship] the script gets its own session of {role_arn}, scoped to run "
          f"{run_id}", flush=True)
    return script_access.CredentialsEndpoint(session)


_MODULE_NOT_FOUND = re.compile(r"^(?:ModuleNotFoundError|ImportError): No module named '([^']+)'",
                               re.MULTILINE)
_SYNTAX = re.compile(r"^(?:SyntaxError|IndentationError|TabError): ", re.MULTILINE)


def last_traceback(output: str) -> str:
    index = output.rfind("Traceback (most recent call last):")
    return tail(output[index:] if index >= 0 else output)


def classify_failure(returncode: int, output: str) -> TrainshipError:
    """Turn a failed script run into the precise error."""
    trace = last_traceback(output)
    missing = _MODULE_NOT_FOUND.findall(trace)
    if missing:
        module = missing[-1]
        return MissingRequirement(
            f"The script imports {module!r}, which is not installed",
            details=trace, step=STEP,
            help=f"Add the package that provides {module!r} to requirements, e.g. "
                 f'"requirements": ["{module.split(".")[0]}"] (the package name may differ '
                 "from the import name, e.g. sklearn -> scikit-learn).")
    if _SYNTAX.search(trace):
        return ScriptSyntaxError("A module the script runs has a syntax error",
                                 details=trace, step=STEP)
    if "Traceback (most recent call last):" in output:
        last = trace.strip().splitlines()[-1] if trace.strip() else "an exception"
        return ScriptFailed(f"The script raised {last}", details=trace, step=STEP)
    return ScriptFailed(f"The script exited with status {returncode}",
                        details=tail(output), step=STEP)


class OutputKeeper:
    """The script's output as the runner keeps it: the first ``head_chars`` streamed to
    ``out`` (the build log) as they come, and the last ``tail_chars`` kept in memory, to
    classify a failure and to print once the script has exited. Memory stays bounded
    whatever the script prints, in lines of any length."""

    def __init__(self, out: Any, head_chars: int = STREAM_HEAD_CHARS,
                 tail_chars: int = KEPT_TAIL_CHARS) -> None:
        self.out = out
        self.head_chars = head_chars
        self.tail_chars = tail_chars
        self.streamed = 0
        self.omitted = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self._lock = threading.Lock()

    def feed(self, chunk: bytes, final: bool = False) -> None:
        text = self._decoder.decode(chunk, final)
        if not text:
            return
        with self._lock:
            part = text[:max(self.head_chars - self.streamed, 0)]
            if part:
                self.out.write(part)
                self.streamed += len(part)
            if len(text) > len(part):
                if not self.omitted:
                    self.out.write(
                        f"\n[trainship] the script's output passed {self.head_chars} "
                        "characters: the rest is not streamed; its end follows when the "
                        "script exits\n")
                self.omitted += len(text) - len(part)
            self.out.flush()
            self._tail.append(text)
            self._tail_len += len(text)
            while self._tail_len - len(self._tail[0]) >= self.tail_chars:
                self._tail_len -= len(self._tail.popleft())

    def text(self) -> str:
        """The end of the output (at most ``tail_chars``)."""
        with self._lock:
            return "".join(self._tail)[-self.tail_chars:]

    def finish(self) -> None:
        """Print the end of what was not streamed (nothing if everything was)."""
        self.feed(b"", final=True)
        if not self.omitted:
            return
        end = self.text()[-self.omitted:]
        if len(end) < self.omitted and "\n" in end:
            end = end[end.index("\n") + 1:]  # from a line's start
        self.out.write(f"\n[trainship] {self.omitted - len(end)} characters of the script's "
                       f"output were not kept; its last {len(end)} characters:\n{end}")
        if not end.endswith("\n"):
            self.out.write("\n")
        self.out.flush()


def _stream(proc: subprocess.Popen[bytes], keeper: OutputKeeper) -> None:
    assert proc.stdout is not None
    while chunk := proc.stdout.read1(READ_CHUNK_BYTES):  # type: ignore[attr-defined]
        keeper.feed(chunk)


def run_script(python: str, script: Path, env: dict[str, str], timeout_seconds: int,
               out: Any = None) -> tuple[int, str]:
    """Run the script bound to the MLflow run; return (exit status, the output's end).

    Its output goes to ``out`` (default: this process's stdout, the build log) through an
    OutputKeeper."""
    keeper = OutputKeeper(out if out is not None else sys.stdout)
    proc = subprocess.Popen([python, "-m", "trainship.bootstrap", str(script)],
                            cwd=script.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    reader = threading.Thread(target=_stream, args=(proc, keeper), daemon=True)
    reader.start()
    try:
        returncode = proc.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=5)
        keeper.finish()
        raise ScriptTimeout(f"The script did not finish within {timeout_seconds} s",
                            details=tail(keeper.text()), step=STEP) from None
    reader.join(timeout=10)
    keeper.finish()
    return returncode, keeper.text()


def run(job: NormalizedRequest, settings: TrainingSettings) -> None:
    script_text = staging.get_text(job.script_uri)
    if script_text is None:
        raise ScriptFailed(f"The staged script {job.script_uri} is missing", step=STEP)
    check_syntax(script_text)
    settings.workdir.mkdir(parents=True, exist_ok=True)
    script = settings.workdir / "train.py"
    script.write_text(script_text)
    python = envs.prepare_environment(job.requirements, settings.env_cache)
    endpoint = script_credentials(settings, job.deployment_id)
    env = script_environment(dict(os.environ), tracking_uri=settings.tracking_uri,
                             run_id=settings.run_id, experiment_name=job.experiment_name,
                             deployment_id=job.deployment_id,
                             credentials=endpoint.environment() if endpoint else None)
    print(f"[trainship] running train.py bound to MLflow run {settings.run_id} "
          f"(timeout {job.timeout_seconds} s)", flush=True)
    with endpoint if endpoint else contextlib.nullcontext():
        started = time.monotonic()
        returncode, output = run_script(python, script, env, job.timeout_seconds)
    # the script's own run time: its process (bootstrap, imports, training, logging the
    # model) from start to exit; `make bench` subtracts it from a deployment's wall time
    print(f"[trainship] script exited with {returncode} after "
          f"{time.monotonic() - started:.3f} s", flush=True)
    if returncode != 0:
        raise classify_failure(returncode, output)


def _fail(job: NormalizedRequest | None, exc: TrainshipError) -> int:
    exc.step = exc.step or STEP
    print(f"[trainship] {exc.name}: {exc.message}", file=sys.stderr, flush=True)
    if job is not None:
        staging.put_text(staging.error_uri(job.script_uri), exc.document().to_json())
    return 1


# MLflow 3's usage telemetry: off in the runner and the script unless the build sets it.
# Offline, its background thread gives up and unsets an environment variable while other
# threads copy os.environ (botocore does, for every signed request): a KeyError
# '_MLFLOW_TELEMETRY_SESSION_ID' that failed a deployment at random.
TELEMETRY_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true"}


def main(argv: list[str]) -> int:
    for key, value in TELEMETRY_ENV.items():
        os.environ.setdefault(key, value)
    command = argv[0] if argv else "run"
    job = load_job()
    try:
        settings = TrainingSettings.from_env()
        if command == "create-run":
            print(create_run(job, settings.tracking_uri))
            return 0
        if not settings.run_id:
            raise TrainingRunnerFailed("MLFLOW_RUN_ID is not set: train.yml exports it "
                                       "from `create-run` before `run`", step=STEP)
        try:
            run(job, settings)
        except TrainshipError:
            finish_run(settings.tracking_uri, settings.run_id, "FAILED")
            raise
        finish_run(settings.tracking_uri, settings.run_id, "FINISHED")
        return 0
    except TrainshipError as exc:
        return _fail(job, exc)
    except Exception as exc:  # noqa: BLE001 - anything else is still reported as a document
        return _fail(job, TrainingRunnerFailed(f"The training runner failed: {exc}",
                                               details=tail(traceback.format_exc()),
                                               step=STEP))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
