"""The original tool's workflow, as docs/api.md "Original API" tells it: `trainship request`
writes request.json, curl sends it to /mlops/deploy, the deployment succeeds and its URL
answers. And the CLI's one-line failures against the real local API."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLES, post_json, wait_done
from trainship.client import Client
from trainship.errors import DeploymentNotFound, InvalidRequest

pytestmark = pytest.mark.e2e

TRAINSHIP = Path(sys.executable).with_name("trainship")
MODEL = "cli-request"
ROW = [[0.5, -1.2, 0.3, 1.1, -0.7, 0.2, 0.9, -0.4, 1.5, -1.0,
        0.1, 0.6, -0.3, 0.8, -1.4, 0.4, 1.2, -0.6, 0.0, 0.7]]


def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TRAINSHIP_API"}


def send(api_url: str, request_file: Path, cwd: Path) -> dict[str, Any]:
    """curl -d @request.json, as the original docs send it (urllib with the file's bytes
    as they are when curl is not installed)."""
    if shutil.which("curl"):
        proc = subprocess.run(
            f"curl -s -X POST {api_url}/mlops/deploy -H 'Content-Type: application/json' "
            f"-d @{request_file.name}", shell=True, cwd=cwd, capture_output=True, text=True,
            check=True, timeout=60)
        answer: dict[str, Any] = json.loads(proc.stdout)
        return answer
    request = urllib.request.Request(f"{api_url}/mlops/deploy", data=request_file.read_bytes(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
        return answer


def test_request_json_sent_with_curl_deploys(local_stack: dict[str, Any], api: Client,
                                             tmp_path: Path) -> None:
    import mlflow
    import pandas as pd

    script = tmp_path / "test_train.py"
    script.write_bytes((EXAMPLES / "mlops_deploy_original.py").read_bytes())
    # the documented command, through a shell, its stdout redirected to request.json
    subprocess.run(f"{shlex.quote(str(TRAINSHIP))} request test_train.py --model-name {MODEL} "
                   "--experiment-name production --requirements scikit-learn pandas numpy "
                   "--timeout 600 > request.json", shell=True,
                   cwd=tmp_path, env=cli_env(), check=True, timeout=60)
    body = json.loads((tmp_path / "request.json").read_text())
    assert set(body) == {"model_name", "script_content", "requirements", "experiment_name",
                         "timeout"}
    assert body["requirements"] == ["scikit-learn", "pandas", "numpy"]
    accepted = send(local_stack["api"], tmp_path / "request.json", tmp_path)
    assert accepted["status"] == "RUNNING", accepted
    record = wait_done(api, accepted["deployment_id"])
    assert record["status"] == "SUCCEEDED", record.get("error")
    # the fields docs/api.md maps to the original response
    result = record["result"]
    assert result["status"] == "SUCCEEDED" and result["model_name"] == MODEL
    assert result["inference_url"].startswith("http://")
    assert result["invocations_url"] == result["inference_url"] + "/invocations"
    assert int(result["model_version"]) >= 1
    assert result["deployment_time_seconds"] > 0
    # the run went to the experiment the request named
    client = mlflow.MlflowClient(tracking_uri=local_stack["mlflow"])
    run = client.get_run(result["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "production"
    # the URL answers, as the registered model predicts
    status, answer = post_json(result["invocations_url"], {"inputs": ROW})
    assert status == 200, answer
    mlflow.set_tracking_uri(local_stack["mlflow"])
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{result['model_version']}")
    assert answer["predictions"] == [int(v) for v in model.predict(pd.DataFrame(ROW))]
    with urllib.request.urlopen(f"{result['inference_url']}/health", timeout=10) as health:
        assert health.status == 200


def test_cli_failures_against_the_local_api(local_stack: dict[str, Any],
                                            tmp_path: Path) -> None:
    """A refused request and an unknown deployment: the API's error document, exit 3."""
    script = tmp_path / "train.py"
    script.write_bytes((EXAMPLES / "mlops_deploy_original.py").read_bytes())
    before = len(Client(local_stack["api"]).list())
    refused = subprocess.run([str(TRAINSHIP), "deploy", str(script), "--model-name",
                              "my model", "--api", local_stack["api"]], cwd=tmp_path,
                             env=cli_env(), capture_output=True, text=True, timeout=60)
    assert refused.returncode == 3
    assert "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error:   InvalidRequest (HTTP 400)\n")
    assert "model_name" in refused.stderr
    assert f"help:    {InvalidRequest.help_text}" in refused.stderr
    assert len(Client(local_stack["api"]).list()) == before  # nothing started
    unknown = subprocess.run([str(TRAINSHIP), "status", "d-unknown", "--api",
                              local_stack["api"]], cwd=tmp_path, env=cli_env(),
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 3
    assert "Traceback" not in unknown.stderr
    assert unknown.stderr.startswith("error:   DeploymentNotFound (HTTP 404)\n")
    assert "d-unknown" in unknown.stderr
    assert f"help:    {DeploymentNotFound.help_text}" in unknown.stderr
