"""`trainship delete` end to end on the local stack (process mode, the local default): a
delete is refused while a deployment of the model runs (nothing changes), takes the model
out of service (its URL refuses connections), moves the MLflow alias off and keeps the
registered versions; a second delete succeeds with nothing to remove; an unknown model is
ModelNotFound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import QUICK_SCRIPT, assert_still_serving, deploy, wait_done
from trainship.client import ApiError, Client
from trainship.terminal import EXIT_OK, EXIT_REFUSED

pytestmark = pytest.mark.e2e
MODEL = "delete_me"  # a model name with an underscore (serving name delete-me)
TRAINSHIP = Path(sys.executable).with_name("trainship")


def trainship(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRAINSHIP_API"}
    return subprocess.run([str(TRAINSHIP), *args], capture_output=True, text=True, env=env,
                          timeout=600)


def mlflow_client(local_stack: dict[str, Any]) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=local_stack["mlflow"],
                               registry_uri=local_stack["mlflow"])


def reach(url: str) -> int | str:
    """The HTTP status of POST /invocations, or why nothing answered."""
    request = urllib.request.Request(f"{url}/invocations", data=b'{"inputs": [[1, 2, 3, 4]]}',
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError as exc:
        return "connection refused" if isinstance(exc.reason, ConnectionRefusedError) \
            else repr(exc.reason)


@pytest.fixture(scope="module")
def served(api: Client) -> dict[str, Any]:
    record = deploy(api, {"model_name": MODEL, "script": QUICK_SCRIPT})
    assert record["status"] == "SUCCEEDED", record.get("error")
    return record["result"]


def test_a_delete_during_a_deployment_is_refused_and_changes_nothing(
        api: Client, served: dict[str, Any], local_stack: dict[str, Any]) -> None:
    running = api.submit({"model_name": MODEL, "script": QUICK_SCRIPT})
    with pytest.raises(ApiError) as refused:
        api.delete_model(MODEL)
    assert refused.value.status == 409
    assert refused.value.document["error"] == "DeploymentInProgress"
    assert running["deployment_id"] in refused.value.document.get("details", "")
    # nothing changed: v1 still answers at its URL, the alias still on it, no execution
    assert_still_serving(served)
    client = mlflow_client(local_stack)
    assert client.get_model_version_by_alias(MODEL, "live").version == "1"
    assert not [d for d in api.list() if d["deployment_id"] != running["deployment_id"]
                and d["status"] == "RUNNING"]
    record = wait_done(api, running["deployment_id"])  # v2 goes live at the same URL
    assert record["status"] == "SUCCEEDED", record.get("error")
    assert record["result"]["inference_url"] == served["inference_url"]


def test_delete_takes_the_model_out_of_service_and_keeps_its_versions(
        api: Client, served: dict[str, Any], local_stack: dict[str, Any]) -> None:
    url = served["inference_url"]
    assert reach(url) == 200
    done = trainship("delete", MODEL, "--api", local_stack["api"])
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    assert "SUCCEEDED" in done.stdout and "removed:" in done.stdout
    assert "RemoveModel" in done.stderr  # the progress of the execution, as for a deploy
    # Process mode: the model's front (its per-model proxy, which held the URL's port) is
    # stopped with the version's server, so nothing listens on that port any more: the
    # connection is refused (not a 404: no process is left there to answer anything).
    assert reach(url) == "connection refused"
    client = mlflow_client(local_stack)
    versions = sorted(v.version for v in client.search_model_versions(f"name = '{MODEL}'"))
    assert versions == ["1", "2"]  # the registry keeps them (no --purge)
    assert "live" not in client.get_registered_model(MODEL).aliases
    # the execution's record: the delete path only (no training, no build)
    [record] = [api.get(d["deployment_id"]) for d in api.list()[:1]]
    assert [s["name"] for s in record["steps"]] == ["Route", "RemoveModel", "ModelRemoved"]
    result = record["result"]
    assert result["action"] == "delete" and result["alias_removed"] == "2"
    assert any("front" in item for item in result["removed"])
    # what a user lists: the model no longer serves; its history says when v2 stopped
    listed = trainship("models", "--output", "json", "--api", local_stack["api"])
    assert listed.returncode == EXIT_OK, listed.stderr
    assert MODEL not in [m["model_name"] for m in json.loads(listed.stdout)]
    shown = trainship("models", MODEL, "--output", "json", "--api", local_stack["api"])
    detail = json.loads(shown.stdout)
    assert detail["live_version"] is None
    assert all(p["to"] for v in detail["versions"] for p in v["served"])  # all closed


def test_a_second_delete_succeeds_with_nothing_to_remove(
        api: Client, local_stack: dict[str, Any]) -> None:
    accepted = api.delete_model(MODEL)
    record = wait_done(api, accepted["deployment_id"])
    assert record["status"] == "SUCCEEDED", record.get("error")
    assert record["result"]["removed"] == []
    assert "nothing to remove" in record["result"]["message"]


def test_deleting_an_unknown_model_is_model_not_found(local_stack: dict[str, Any]) -> None:
    done = trainship("delete", "unknown_model", "--api", local_stack["api"])
    assert done.returncode == EXIT_REFUSED, done.stdout + done.stderr
    assert "ModelNotFound" in done.stderr
