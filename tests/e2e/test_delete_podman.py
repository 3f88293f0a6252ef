"""`trainship delete` in container mode (target podman): the model's pod and its proxy go,
its URL refuses connections, the registry keeps its versions; a second delete finds nothing.
Like tests/e2e/test_podman.py, a machine without the container tools fails here: it does not
skip (`make test` installs them)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLES, deploy, post_json, wait_done
from trainship import containers
from trainship.client import Client
from trainship.names import serving_name

pytestmark = pytest.mark.e2e
MODEL = "delete_podman"
SERVING = serving_name(MODEL)  # delete-podman
ROWS = {"dataframe_split": {
    "columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                "petal width (cm)"],
    "data": [[5.1, 3.5, 1.4, 0.2]]}}


def refused(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/ping", timeout=10).close()
    except urllib.error.URLError as exc:
        return isinstance(exc.reason, ConnectionRefusedError)
    return False


def test_delete_in_container_mode(api: Client, local_stack: dict[str, Any],
                                  local_home: Path) -> None:
    assert containers.missing_tools() == []  # fail, never skip
    record = deploy(api, {"model_name": MODEL, "target": "podman",
                          "script": (EXAMPLES / "iris_sklearn.py").read_text()})
    assert record["status"] == "SUCCEEDED", json.dumps(record.get("error"), indent=2)
    url = record["result"]["inference_url"]
    assert post_json(f"{url}/invocations", ROWS)[0] == 200

    done = wait_done(api, api.delete_model(MODEL)["deployment_id"])
    assert done["status"] == "SUCCEEDED", done.get("error")
    removed = done["result"]["removed"]
    assert f"podman: pod {SERVING}-v1-pod-0: {MODEL} v1 (serving)" in removed
    # the pod is gone and the model's proxy (which held the URL's port) stopped: refused
    assert containers.podman(local_home, "pod", "exists", f"{SERVING}-v1-pod-0",
                             check=False).returncode != 0
    assert refused(url)
    assert not list((local_home / "podman" / SERVING).glob("v*.json"))
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=local_stack["mlflow"],
                                 registry_uri=local_stack["mlflow"])
    assert [v.version for v in client.search_model_versions(f"name = '{MODEL}'")] == ["1"]
    assert "live" not in client.get_registered_model(MODEL).aliases

    again = wait_done(api, api.delete_model(MODEL)["deployment_id"])
    assert again["status"] == "SUCCEEDED" and again["result"]["removed"] == []
