"""What the day-two story (tests/e2e/test_day_two.py) uses: the CLI as a user runs it, the
registry, and requests kept going across a switch of versions (new connections and one
keep-alive connection)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.helpers import post_json

TRAINSHIP = Path(sys.executable).with_name("trainship")
# every version predicts its own constant class: which version answers is plain to see
SCRIPT = """
import mlflow, mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier
X, _ = load_iris(return_X_y=True)
with mlflow.start_run():
    mlflow.sklearn.log_model(DecisionTreeClassifier().fit(X, [{label}] * len(X)),
                             name="model", input_example=X[:1])
"""
ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``trainship ARGS`` as a user runs it (no TRAINSHIP_API: every call names --api)."""
    env = {k: v for k, v in os.environ.items() if k != "TRAINSHIP_API"}
    proc = subprocess.run([str(TRAINSHIP), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=900)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def cli(api: str, *args: str, cwd: Path | None = None) -> tuple[int, Any]:
    """``trainship ARGS --api API --output json``: exit code and the JSON it printed."""
    proc = run(*args, "--api", api, "--output", "json", cwd=cwd)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else proc.stderr


def listed(api: str, name: str) -> dict[str, Any]:
    """The model's entry in `trainship models --output json` (exactly one)."""
    code, models = cli(api, "models")
    assert code == 0, models
    found: list[dict[str, Any]] = [m for m in models if m["model_name"] == name]
    assert len(found) == 1, models
    return found[0]


def answer(url: str) -> Any:
    status, body = post_json(f"{url}/invocations", ROW)
    assert status == 200, body
    return body["predictions"][0]


def live_version(url: str) -> str:
    """The version the URL answers as (the service's trainship_model_info metric)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(r'trainship_model_info\{[^}]*model_version="(\d+)"', text)
    assert found, text[:500]
    return found.group(1)


def registry(local_stack: dict[str, Any]) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=local_stack["mlflow"], registry_uri=local_stack["mlflow"])


def live(local_stack: dict[str, Any], model: str) -> str:
    return str(registry(local_stack).get_model_version_by_alias(model, "live").version)


def refused(url: str) -> bool:
    """Nothing listens at the URL any more (the model's front, which held its port, is gone):
    the connection is refused (not a 404: no process is left there to answer anything)."""
    try:
        urllib.request.urlopen(f"{url}/ping", timeout=10).close()
    except urllib.error.URLError as exc:
        return isinstance(exc.reason, ConnectionRefusedError)
    return False


def _new_connections(url: str, answers: list[Any], stop: threading.Event) -> None:
    while not stop.is_set():
        request = urllib.request.Request(f"{url}/invocations", data=json.dumps(ROW).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answers.append(response.status)
        except urllib.error.HTTPError as exc:
            answers.append(exc.code)
        except OSError as exc:  # refused, reset: what the front must never cause
            answers.append(repr(exc))


def _one_keep_alive_connection(url: str, answers: list[Any], stop: threading.Event) -> None:
    address = urlparse(url)
    conn = http.client.HTTPConnection(str(address.hostname), address.port, timeout=30)
    try:
        while not stop.is_set():
            try:
                conn.request("POST", "/invocations", body=json.dumps(ROW),
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                answers.append(response.status)
            except (OSError, http.client.HTTPException) as exc:
                answers.append(repr(exc))
                conn.close()  # the next request opens a new connection
    finally:
        conn.close()


@contextlib.contextmanager
def traffic(url: str) -> Iterator[dict[str, list[Any]]]:
    """Requests to ``url`` over new connections and over one keep-alive connection for as
    long as the block runs, and a second more (so both cross a switch made in the block):
    each answer's status, or why none came."""
    answers: dict[str, list[Any]] = {"new": [], "kept": []}
    stop = threading.Event()
    pollers = [threading.Thread(target=_new_connections, args=(url, answers["new"], stop)),
               threading.Thread(target=_one_keep_alive_connection,
                                args=(url, answers["kept"], stop))]
    for poller in pollers:
        poller.start()
    try:
        yield answers
        stop.wait(1.0)
    finally:
        stop.set()
        for poller in pollers:
            poller.join(30)
