"""The local stack's daemon: ``python -m trainship.local.daemon HOME`` (started by
trainship.local.stack.up, which holds the control).

It holds the home's lock (trainship.local.stack) for its life, and:
  * a real MLflow tracking server (sqlite + local artifact store), as a child process,
    behind the MLflow gate (trainship.local.mlflow_gate, SageMaker managed MLflow's IAM);
  * moto's Step Functions as a server on 127.0.0.1 executing infra/statemachine/deploy.asl.json,
    with Task states routed (trainship.local.sfn, trainship.local.lambda_runtime) to the
    Lambda handlers, called in process, and to the local CodeBuild runner
    (trainship.local.codebuild);
  * the API adapter (trainship.local.api_server) in front of lambdas.api.handler;
  * the web console (trainship.console.server, docs/console.md), reading the API, Step
    Functions and MLflow as any client does.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from trainship import containers, pipeline, script_access
from trainship.cluster.podman import PodmanDriver
from trainship.cluster.process import ProcessDriver
from trainship.config import env_flag
from trainship.console.server import ConsoleServer
from trainship.deployments import DeploymentStore
from trainship.local import sfn
from trainship.local.api_server import ApiServer
from trainship.local.codebuild import LocalCodeBuild, Project
from trainship.local.lambda_runtime import TaskRouter, local_function_arn
from trainship.local.mlflow_gate import Gate, GateServer, Principals
from trainship.local.stack import (
    LOCKED_EXIT,
    REGION,
    REPO_ROOT,
    STACK_ACCESS_KEY,
    Paths,
    hold_lock,
    holder,
    stop_containers,
)
from trainship.local.warm import WarmPython
from trainship.pipeline import ASL_PATH, BUILD_STEPS, LAMBDA_STEPS, STATE_MACHINE_NAME
from trainship.procs import free_port, stop_pid

# the local projects' names: trainship-train, trainship-image
PROJECTS = {state: f"trainship-{step.project.lower()}" for state, step in BUILD_STEPS.items()}
TRAIN_PROJECT, IMAGE_PROJECT = PROJECTS["TrainModel"], PROJECTS["BuildImage"]
# The MLflow gate (trainship.local.mlflow_gate) stands for SageMaker managed MLflow's IAM:
# the names the training runner scopes the script's session to.
LOCAL_ACCOUNT = "123456789012"
MLFLOW_SERVER_ARN = (f"arn:aws:sagemaker:{REGION}:{LOCAL_ACCOUNT}:"
                     "mlflow-tracking-server/trainship-local")
MLFLOW_ARTIFACTS_BUCKET = "trainship-local-mlflow-artifacts"
SCRIPT_ROLE_ARN = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/trainship-local-script"


def buildspec(state: str) -> Path:
    return REPO_ROOT / BUILD_STEPS[state].buildspec


def substitutions() -> dict[str, str]:
    return pipeline.substitutions({step: local_function_arn(step) for step in LAMBDA_STEPS},
                                  PROJECTS)


def render_definition(subs: dict[str, str], path: Path = ASL_PATH) -> str:
    """The ASL file with ``${Name}`` substitutions, as CDK's definition_substitutions does."""
    text = path.read_text()
    for key, value in subs.items():
        text = text.replace("${" + key + "}", value)
    if "${" in text:
        missing = text[text.index("${"):text.index("}", text.index("${")) + 1]
        raise ValueError(f"no substitution for {missing}")
    json.loads(text)
    return text


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def _port(saved: dict[str, int], name: str) -> int:
    port = saved.get(name)
    if port:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    return free_port()


def stack_credentials(home: Path) -> dict[str, str]:
    """The stack's own access key (full access through the MLflow gate), kept in the home
    so that it survives restarts; its secret is random, so a script cannot guess it."""
    given = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if os.environ.get("AWS_ACCESS_KEY_ID") == STACK_ACCESS_KEY and given:
        # whoever starts the stack chose its secret (the e2e tests do, for every stack)
        return {"aws_access_key_id": STACK_ACCESS_KEY, "aws_secret_access_key": given}
    path = home / "credentials.json"
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
        return data
    data = {"aws_access_key_id": STACK_ACCESS_KEY,
            "aws_secret_access_key": secrets.token_urlsafe(30)}
    path.touch(mode=0o600)
    path.write_text(json.dumps(data))
    return data


class LocalStack:
    def __init__(self, home: Path) -> None:
        self.paths = Paths(home.resolve())
        self.mlflow: subprocess.Popen[bytes] | None = None
        self.gate: GateServer | None = None
        self.moto: ThreadedMotoServer | None = None
        self.api: ApiServer | None = None
        self.console: ConsoleServer | None = None
        self.codebuild: LocalCodeBuild | None = None
        self.warm: WarmPython | None = None
        self.store: DeploymentStore | None = None
        self.urls: dict[str, str] = {}
        self._stop = threading.Event()

    def start(self) -> dict[str, str]:
        paths = self.paths
        paths.home.mkdir(parents=True, exist_ok=True)
        ports_file = paths.home / "ports.json"
        saved = json.loads(ports_file.read_text()) if ports_file.exists() else {}
        ports = {name: _port(saved, name)
                 for name in ("api", "mlflow", "mlflow_internal", "stepfunctions", "console")}
        ports_file.write_text(json.dumps(ports))
        # MLflow's clients talk to the gate; MLflow itself listens on an internal port
        mlflow_url = f"http://127.0.0.1:{ports['mlflow']}"
        credentials = stack_credentials(paths.home)
        sfn_url = f"http://127.0.0.1:{ports['stepfunctions']}"
        api_url = f"http://127.0.0.1:{ports['api']}"
        venv_bin = str(Path(sys.executable).parent)
        # container mode (target podman) is on when its tools are installed
        podman_ready = not containers.missing_tools()
        targets = os.environ.get("TRAINSHIP_TARGETS") or (
            "process,podman" if podman_ready else "process")
        image_repository = (f"{containers.ensure_registry(paths.home)}/trainship-models"
                            if podman_ready else "")
        os.environ.update({
            "TRAINSHIP_TARGETS": targets,
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": f"{REPO_ROOT}:{os.environ['PYTHONPATH']}"
            if os.environ.get("PYTHONPATH") else str(REPO_ROOT),
            "TRAINSHIP_HOME": str(paths.home),
            "TRAINSHIP_STAGING_URI": str(paths.sub("staging")),
            "TRAINSHIP_ARCHIVE_DIR": str(paths.sub("deployments")),
            "TRAINSHIP_CLUSTER": os.environ.get("TRAINSHIP_CLUSTER", "process"),
            # WaitForRollout waits 0 s here and CheckRollout watches the new version for
            # up to 1 s (AWS: 10 s and one look; infra/limits.py)
            "TRAINSHIP_ROLLOUT_POLL_SECONDS": os.environ.get(
                "TRAINSHIP_ROLLOUT_POLL_SECONDS", "0"),
            "TRAINSHIP_ROLLOUT_WATCH_SECONDS": os.environ.get(
                "TRAINSHIP_ROLLOUT_WATCH_SECONDS", "1"),
            "TRAINSHIP_ROLLOUT_TIMEOUT_SECONDS": os.environ.get(
                "TRAINSHIP_ROLLOUT_TIMEOUT_SECONDS", "180"),
            "MLFLOW_TRACKING_URI": mlflow_url,
            "AWS_ACCESS_KEY_ID": credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"],
            # every MLflow client signs its requests, as SageMaker managed MLflow requires
            "MLFLOW_TRACKING_AWS_SIGV4": "true",
            "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL_SFN": sfn_url,
            "POWERTOOLS_TRACE_DISABLED": "true",
            # MLflow's telemetry thread gives up offline and deletes a variable from
            # os.environ while other threads copy it (KeyError _MLFLOW_TELEMETRY_SESSION_ID)
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "trainship",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"),
        })

        # MLflow: a real tracking server with a sqlite backend and local artifacts.
        mlflow_dir = paths.sub("mlflow")
        self.mlflow = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server",
             "--backend-store-uri", f"sqlite:///{mlflow_dir / 'mlflow.db'}",
             "--artifacts-destination", str(mlflow_dir / "artifacts"),
             "--host", "127.0.0.1", "--port", str(ports["mlflow_internal"]),
             "--workers", "1"],
            stdout=open(paths.home / "mlflow.log", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
            # MLflow's job runners (GenAI evaluation etc.) are not used here: about ten
            # processes and 2 GB of memory saved, and a faster start.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})

        # Step Functions: moto's server, executing state machines, Tasks routed locally.
        self.gate = GateServer(
            Gate(Principals(credentials["aws_access_key_id"],
                            credentials["aws_secret_access_key"],
                            {SCRIPT_ROLE_ARN: script_access.role_policy(
                                tracking_server_arn=MLFLOW_SERVER_ARN,
                                artifact_bucket_arns=[
                                    f"arn:aws:s3:::{MLFLOW_ARTIFACTS_BUCKET}"])}),
                 MLFLOW_SERVER_ARN, MLFLOW_ARTIFACTS_BUCKET),
            "127.0.0.1", ports["mlflow"], ports["mlflow_internal"],
            log=lambda line: print(line, flush=True))
        self.gate.start()
        # what a build gets from its role (CodeBuild: the container credentials endpoint)
        build_aws = {
            "MLFLOW_TRACKING_AWS_SIGV4": "true",
            "AWS_ACCESS_KEY_ID": credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}
        base_env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "PYTHONPATH", "TMPDIR")
                    if k in os.environ}
        if env_flag("TRAINSHIP_WARM_PYTHON",
                    {"TRAINSHIP_WARM_PYTHON": os.environ.get("TRAINSHIP_WARM_PYTHON", "on")}):
            # the builds' `python3 -m trainship...` commands fork from an interpreter that
            # has imported MLflow once (trainship.local.warm); no credentials in it
            self.warm = WarmPython(paths.home, {**base_env, "MLFLOW_DISABLE_TELEMETRY": "true"},
                                   paths.home / "warm.log")
            base_env["PATH"] = f"{self.warm.start()}:{base_env['PATH']}"
        self.codebuild = LocalCodeBuild(
            projects={
                TRAIN_PROJECT: Project(TRAIN_PROJECT, buildspec("TrainModel"), REPO_ROOT, {
                    **build_aws,
                    # the runner assumes the script role at moto's STS (the same server
                    # as Step Functions) and scopes the session to the gate's names
                    "AWS_ENDPOINT_URL_STS": sfn_url,
                    script_access.SCRIPT_ROLE_ENV: SCRIPT_ROLE_ARN,
                    script_access.TRACKING_SERVER_ARN_ENV: MLFLOW_SERVER_ARN,
                    script_access.PROXIED_ARTIFACTS_BUCKET_ENV: MLFLOW_ARTIFACTS_BUCKET,
                    "MLFLOW_TRACKING_URI": mlflow_url,
                    "TRAINSHIP_ENV_CACHE": str(paths.sub("envs"))}),
                IMAGE_PROJECT: Project(IMAGE_PROJECT, buildspec("BuildImage"), REPO_ROOT, {
                    **build_aws,
                    "MLFLOW_TRACKING_URI": mlflow_url,
                    "TRAINSHIP_HOME": str(paths.home),
                    "TRAINSHIP_IMAGE_BUILDERS": "process=bundle,podman=podman",
                    "TRAINSHIP_IMAGE_BUILDER": "bundle",
                    "TRAINSHIP_REGISTRY": str(paths.sub("registry")),
                    # container mode: ECR is docker-registry on 127.0.0.1, the base image
                    # is made with debootstrap, wheels come from the host's pip
                    "TRAINSHIP_IMAGE_REPOSITORY": image_repository,
                    "TRAINSHIP_BASE_IMAGE": "debootstrap:bookworm",
                    "TRAINSHIP_IMAGE_WHEELS": "host"}),
            },
            logs_dir=paths.sub("builds"), work_root=paths.sub("work"), base_env=base_env)
        sfn.install(TaskRouter(self.codebuild, paths.home / "faults.json"))
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=ports["stepfunctions"],
                                       verbose=False)
        self.moto.start()
        request = urllib.request.Request(
            f"{sfn_url}/moto-api/config", method="POST",
            data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
            headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()
        client = boto3.client("stepfunctions")
        arn = client.create_state_machine(
            name=STATE_MACHINE_NAME, definition=render_definition(substitutions()),
            roleArn="arn:aws:iam::123456789012:role/trainship-local")["stateMachineArn"]
        os.environ["STATE_MACHINE_ARN"] = arn
        self.store = DeploymentStore(client, arn, os.environ["TRAINSHIP_ARCHIVE_DIR"])
        interrupted = self.store.mark_interrupted()

        _wait_http(f"http://127.0.0.1:{ports['mlflow_internal']}/health", 120, self.mlflow)
        restored = ProcessDriver(paths.home / "serving").restore()
        if podman_ready and (paths.home / "podman").exists():
            restored += PodmanDriver(paths.home / "podman").restore()

        self.api = ApiServer("127.0.0.1", ports["api"])
        self.api.start()
        console_url = f"http://127.0.0.1:{ports['console']}"
        self.console = ConsoleServer("127.0.0.1", ports["console"], api_url,
                                     lambda: boto3.client("stepfunctions"), mlflow_url)
        self.console.start()
        threading.Thread(target=self._archive_loop, args=(self.store,),
                         daemon=True).start()
        self.urls = {"api": api_url, "mlflow": mlflow_url, "stepfunctions": sfn_url,
                     "console": console_url,
                     "state_machine_arn": arn, "targets": targets,
                     "registry": image_repository.split("/", 1)[0]}
        print(f"local stack up: {self.urls}; interrupted deployments: {interrupted}; "
              f"restored servers: {restored}", flush=True)
        return self.urls

    def _archive_loop(self, store: DeploymentStore) -> None:
        while not self._stop.wait(2.0):
            try:
                store.sync_archive()
            except Exception:  # noqa: BLE001 - keep archiving through transient errors
                traceback.print_exc()

    def stop(self) -> None:
        self._stop.set()
        if self.console is not None:
            self.console.stop()
        if self.api is not None:
            self.api.stop()
        if self.codebuild is not None:
            self.codebuild.kill_all()
        try:
            if self.store is not None:
                self.store.sync_archive()
        except Exception:  # noqa: BLE001
            traceback.print_exc()
        ProcessDriver(self.paths.home / "serving").stop_all()
        if self.warm is not None:  # after the model servers it started have stopped
            self.warm.stop()
        stop_containers(self.paths.home)
        if self.gate is not None:
            self.gate.stop()
        if self.mlflow is not None:
            stop_pid(self.mlflow.pid)
        if self.moto is not None:
            self.moto.stop()


def serve_forever(home: Path) -> int:
    """Run the stack until SIGTERM/SIGINT, holding the home's lock all along; return
    LOCKED_EXIT at once, having touched nothing, if another daemon holds it."""
    lock = hold_lock(home)
    if lock is None:
        print(f"another local stack daemon (pid {holder(home)}) runs in {home.resolve()}: "
              "not starting a second one", flush=True)
        return LOCKED_EXIT
    stack = LocalStack(home)
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    info_path = stack.paths.info
    try:
        urls = stack.start()
        info_path.write_text(json.dumps({"pid": os.getpid(), "ready": True, **urls}))
        done.wait()
    finally:
        print("local stack stopping", flush=True)
        info_path.unlink(missing_ok=True)
        stack.stop()
        print("local stack stopped", flush=True)
        lock.close()  # down waits for this: everything the stack started has stopped
    return 0


if __name__ == "__main__":
    sys.exit(serve_forever(Path(sys.argv[1] if len(sys.argv) > 1 else ".trainship")))
