"""A model's day two end to end on the local stack, in process and container (podman) mode:
deploy v1 and v2 of a model whose answers differ per version (same URL, `trainship models`
lists v2 live), `trainship rollback NAME --to 1` serves v1 again at that URL from its image,
without training or building (the execution's history has neither), the MLflow alias moves
down to 1; the bad cases are refused with their own error names and change nothing; then
`trainship delete NAME` takes it out of service (its URL refuses connections, `models` no
longer lists it, the registry keeps its versions). Container mode needs podman and its
tools (`make test` installs them): without them this fails, it does not skip."""

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

from tests.helpers import deploy, post_json, wait_done
from trainship import containers, served
from trainship.client import Client
from trainship.names import serving_name

pytestmark = pytest.mark.e2e
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
TARGETS = ["process", "podman"]


def cli(api: str, *args: str) -> tuple[int, Any]:
    """``trainship ARGS --api API --output json``: exit code and the JSON it printed."""
    env = {k: v for k, v in os.environ.items() if k != "TRAINSHIP_API"}
    proc = subprocess.run([str(TRAINSHIP), *args, "--api", api, "--output", "json"],
                          capture_output=True, text=True, env=env, timeout=900)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else proc.stderr


def answer(url: str) -> Any:
    status, body = post_json(f"{url}/invocations", ROW)
    assert status == 200, body
    return body["predictions"][0]


@pytest.fixture(scope="module", params=TARGETS)
def two_versions(request: pytest.FixtureRequest, api: Client) -> dict[str, Any]:
    target = request.param
    if target == "podman":
        assert containers.missing_tools() == []  # fail, never skip
    model = f"roll_back_{target}"  # an underscore: the serving name differs (roll-back-...)
    results = []
    for label in (1, 2):
        record = deploy(api, {"model_name": model, "target": target,
                              "script": SCRIPT.format(label=label)})
        assert record["status"] == "SUCCEEDED", json.dumps(record.get("error"), indent=2)
        results.append(record["result"])
    v1, v2 = results
    assert v2["inference_url"] == v1["inference_url"]
    assert answer(v2["inference_url"]) == 2
    return {"model": model, "url": v1["inference_url"], "v1": v1, "v2": v2, "target": target}


def registry(local_stack: dict[str, Any]) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=local_stack["mlflow"], registry_uri=local_stack["mlflow"])


def live(local_stack: dict[str, Any], model: str) -> str:
    return str(registry(local_stack).get_model_version_by_alias(model, "live").version)


def test_bad_rollbacks_are_refused_and_change_nothing(
        two_versions: dict[str, Any], local_stack: dict[str, Any]) -> None:
    model, api = two_versions["model"], local_stack["api"]
    for args, error in ((["--to", "9"], "ModelVersionNotFound"),
                        (["--to", "2"], "VersionAlreadyLive"),
                        (["--to", "x"], "InvalidRequest")):
        code, doc = cli(api, "rollback", model, *args)
        assert code != 0 and doc["error"] == error, (args, doc)
        assert doc["help"]
    code, doc = cli(api, "rollback", "no_such_model", "--to", "1")
    assert code != 0 and doc["error"] == "ModelNotFound", doc
    # a registered version that never served: no image to serve again
    client = registry(local_stack)
    first = client.get_model_version(model, "1")
    logged = first.source.split("/")[-1] if first.source.startswith("models:/m-") else None
    never = client.create_model_version(model, first.source, run_id=first.run_id,
                                        model_id=logged)
    code, doc = cli(api, "rollback", model, "--to", str(never.version))
    assert code != 0 and doc["error"] == "VersionNeverServed", doc
    # nothing changed: v2 still live and answering, the alias on it
    assert live(local_stack, model) == "2"
    assert answer(two_versions["url"]) == 2


def test_rollback_serves_the_earlier_version_at_the_same_url_without_a_build(
        two_versions: dict[str, Any], local_stack: dict[str, Any], api: Client) -> None:
    model, url = two_versions["model"], two_versions["url"]
    code, result = cli(local_stack["api"], "rollback", model, "--to", "1")
    assert code == 0, result
    assert result["status"] == "SUCCEEDED" and result["model_version"] == "1", result
    assert result["inference_url"] == url and result["live"] is True
    assert result["image_uri"] == two_versions["v1"]["image_uri"]  # v1's own image
    assert answer(url) == 1
    record = wait_done(api, result["deployment_id"])
    steps = [step["name"] for step in record["steps"]]
    assert "PrepareRollback" in steps and "SmokeTestModel" in steps, steps
    assert not {"TrainModel", "BuildImage", "ValidateRequest", "RegisterModel"} & set(steps)
    assert live(local_stack, model) == "1"
    by_version = {v.version: v for v in served.versions(registry(local_stack), model)}
    assert by_version["1"].periods[-1]["to"] is None and len(by_version["1"].periods) == 2
    assert by_version["1"].periods[-1]["deployment_id"] == result["deployment_id"]
    assert by_version["2"].periods[-1]["to"] is not None
    # and forward again: a rollback to the higher version works the same way
    code, doc = cli(local_stack["api"], "rollback", model, "--to", "1")
    assert code != 0 and doc["error"] == "VersionAlreadyLive", doc
    code, result = cli(local_stack["api"], "rollback", model, "--to", "2")
    assert code == 0 and result["model_version"] == "2", result
    assert answer(url) == 2 and live(local_stack, model) == "2"
    code, listed = cli(local_stack["api"], "models")
    [mine] = [m for m in listed if m["model_name"] == model]
    assert mine["live_version"] == "2" and mine["inference_url"] == url, mine


def refused(url: str) -> bool:
    """Nothing listens at the URL any more (the model's front, which held its port, is gone)."""
    try:
        urllib.request.urlopen(f"{url}/ping", timeout=10).close()
    except urllib.error.URLError as exc:
        return isinstance(exc.reason, ConnectionRefusedError)
    return False


def test_delete_takes_it_out_of_service_and_keeps_the_registry(
        two_versions: dict[str, Any], local_stack: dict[str, Any], local_home: Path) -> None:
    model, url = two_versions["model"], two_versions["url"]
    code, result = cli(local_stack["api"], "delete", model)
    assert code == 0 and result["status"] == "SUCCEEDED", result
    assert result["removed"] and result["alias_removed"] == "2", result
    assert refused(url)
    if two_versions["target"] == "podman":  # its pods are gone
        pods = containers.podman(local_home, "pod", "ps", "--format", "{{.Name}}",
                                 check=False).stdout
        assert serving_name(model) not in pods, pods
    code, listed = cli(local_stack["api"], "models")
    assert model not in [m["model_name"] for m in listed]
    versions = {v.version for v in registry(local_stack).search_model_versions(
        f"name = '{model}'")}
    assert {"1", "2"} <= versions  # the registry keeps them (no --purge)
