"""What several test modules share: paths, API calls, a step state and a fake cluster
driver, Lambda events and contexts, the CDK synth.

Fixtures stay in the conftest.py files; plain functions and constants live here, so that
no test module imports another test module or a conftest.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

from trainship.client import Client
from trainship.cluster import Answer, Applied, RolloutStatus
from trainship.serving import auth_file
from trainship.state import DeploymentState, Handle

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "examples"
# Planted in the local stack's environment; it must never reach a script, a log or a record.
PLANTED_SECRET = "planted-5f0c1e9a7d3b4c28"


# --- the local stack's API (end-to-end tests) --------------------------------------------

def wait_done(client: Client, deployment_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record: dict[str, Any] = client.get(deployment_id)
        if record["status"] not in ("RUNNING",):
            return record
        time.sleep(1)
    raise AssertionError(f"{deployment_id} still running after {timeout} s")


def deploy(client: Client, body: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    accepted = client.submit(body)
    return wait_done(client, accepted["deployment_id"], timeout)


def post_json(url: str, payload: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# A script that trains and logs a small model in seconds (the reliability tests).
QUICK_SCRIPT = """
import mlflow, mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier
X, y = load_iris(return_X_y=True)
with mlflow.start_run():
    mlflow.sklearn.log_model(DecisionTreeClassifier(max_depth=2).fit(X, y), name="model")
"""
ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


def assert_still_serving(result: dict[str, Any]) -> None:
    status, body = post_json(f"{result['inference_url']}/invocations", ROW)
    assert status == 200 and len(body["predictions"]) == 1


# --- the pipeline's steps (unit tests) ----------------------------------------------------

def state(tmp_path: Path, **extra: Any) -> DeploymentState:
    """A state as ValidateRequest leaves it, with ``extra`` fields on top."""
    return DeploymentState.model_validate({
        "deployment_id": "d-1", "model_name": "m", "experiment_name": "m",
        "script_uri": str(tmp_path / "d-1" / "train.py"), "script_sha256": "0" * 64,
        "requirements": [], "timeout_seconds": 60, "replicas": 1,
        "resources": {"cpu": "1", "memory": "1Gi"}, **extra})


def handle(version: str = "1", **extra: Any) -> Handle:
    """A driver's handle as the state carries it: the keys every driver sets, and ``extra``
    (a driver's own keys)."""
    return cast(Handle, {"model_name": "m", "serving_name": "m", "version": version,
                         "image_uri": f"img:m-v{version}", **extra})


class FakeDriver:
    """A cluster driver whose rollouts report ``statuses`` in turn; it keeps each model's
    auth file text in ``auth`` and what ``invoke`` was sent in ``invoked`` (answering
    ``answers`` in turn, 200 by default)."""

    def __init__(self, statuses: list[RolloutStatus]) -> None:
        self.statuses = statuses
        self.discarded: list[Handle] = []
        self.auth: dict[str, str] = {}
        self.invoked: list[tuple[str, Any, dict[str, str]]] = []
        self.answers: list[Answer] = []

    def read_auth(self, model_name: str) -> str | None:
        return self.auth.get(model_name)

    def write_auth(self, model_name: str, text: str) -> None:
        self.auth[model_name] = text

    def update_auth(self, model_name: str,
                    change: Callable[[str | None], str | None]) -> str | None:
        new = change(self.auth.get(model_name))
        if new is not None:
            self.auth[model_name] = new
        return self.auth.get(model_name)

    def invoke(self, handle: Handle, path: str, payload: Any, *, timeout: float,
               headers: dict[str, str] | None = None) -> Answer | None:
        """``answers`` in turn; then what a current inference service answers: 401 without
        a token the model's auth file accepts, else 200."""
        self.invoked.append((path, payload, dict(headers or {})))
        if self.answers:
            return self.answers.pop(0)
        text = self.auth.get(handle["model_name"])
        token = (headers or {}).get("X-Trainship-Token")
        if text is not None and not auth_file.allows(auth_file.parse(text), token,
                                                     time.time()):
            return Answer(401, '{"error_code": "UNAUTHENTICATED"}')
        return Answer(200, '{"predictions": [0]}')

    def apply(self, spec: Any) -> Applied:
        return Applied("http://h", handle(n=1))

    def status(self, handle: Handle) -> RolloutStatus:
        return self.statuses.pop(0)

    def lock(self, model_name: str) -> Any:
        return contextlib.nullcontext()

    def promote(self, handle: Handle, *, replace_higher: bool = False) -> str | None:
        return None

    def discard(self, handle: Handle) -> None:
        self.discarded.append(handle)


# --- Lambda handlers (unit tests) --------------------------------------------------------

@dataclass
class LambdaContext:
    """The attributes Powertools' Logger reads from a Lambda context."""

    function_name: str = "trainship-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:trainship-test"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"


def api_gateway_event(method: str, path: str, *, resource: str | None = None,
                      path_parameters: dict[str, str] | None = None, body: Any = None,
                      headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A REST API (v1) Lambda proxy event as API Gateway sends it (the shape of
    Powertools' tests/events/apiGatewayProxyEvent.json): ``resource`` is the route's
    template, ``path`` the concrete path. A ``body`` that is not a str is sent as JSON."""
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    all_headers = {"Content-Type": "application/json", "Host": "api.example.test",
                   **(headers or {})}
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012", "apiId": "1234567890", "stage": "prod",
            "httpMethod": method, "path": f"/prod{path}", "resourcePath": resource or path,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "protocol": "HTTP/1.1",
            "requestTimeEpoch": 1428582896000,
            "identity": {"sourceIp": "192.0.2.1", "userArn": None, "caller": None,
                         "user": None, "accessKey": None},
        },
        "body": text,
        "isBase64Encoded": False,
    }


def save_logistic_model(path: Path) -> Path:
    """A small scikit-learn model (4 float features, 2 classes) saved as an MLflow model at
    ``path``, for tests of the inference service. Its requirements are given (the installed
    scikit-learn and cloudpickle): MLflow infers them otherwise by loading the model in a
    subprocess, two seconds per save that no test here looks at."""
    import cloudpickle
    import mlflow.sklearn
    import sklearn
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=100, n_features=4, random_state=1)
    mlflow.sklearn.save_model(LogisticRegression().fit(x, y), str(path),
                              serialization_format="cloudpickle",
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}",
                                                f"cloudpickle=={cloudpickle.__version__}"])
    return path


class LocalServer:
    """A fake HTTP server on 127.0.0.1 (the fake API, Kubernetes API server, MLflow):
    ``handler`` answers in threads; ``start()`` serves, ``close()`` stops and frees the port."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # shutdown() waits for the loop's next poll (0.5 s by default)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)

    def start(self) -> LocalServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serving(model_dir: Path, *, workers: int = 1, tmpdir: Path | None = None,
                  **extra_env: str) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m trainship.serving`` on a free port (its own metrics directory under
    ``tmpdir`` when given), once it answers /ping: the process and its URL."""
    port = free_port()
    env = {**os.environ, **extra_env,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "trainship.serving", "--model-dir",
                             str(model_dir), "--port", str(port), "--workers", str(workers)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not answer /ping")


# A SUCCEEDED execution's output and a recorded failure, for the API route tests
SAMPLE_RESULT = {"status": "SUCCEEDED", "deployment_id": "d-ok", "inference_url": "http://m",
                 "invocations_url": "http://m/invocations", "model_name": "iris",
                 "serving_name": "iris", "model_version": "1", "model_uri": "models:/m-1",
                 "run_id": "r1", "image_uri": "img@sha256:0", "alias": "live",
                 "deployment_time_seconds": 1.5}
SAMPLE_FAILURE = {"error": "NoModelLogged", "message": "The run logged no model",
                  "details": "", "help": "Log a model with mlflow.sklearn.log_model",
                  "step": "RegisterModel"}
