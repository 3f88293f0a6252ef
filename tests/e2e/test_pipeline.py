"""The whole pipeline on the local stack, through the real ASL, handlers and buildspecs."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLES, REPO, deploy, post_json, wait_done
from trainship.client import ApiError, Client

pytestmark = pytest.mark.e2e

HAPPY_PATH = ["ValidateRequest", "TrainModel", "RegisterModel", "BuildImage", "DeployModel",
              "WaitForRollout", "CheckRollout", "IsRolloutDone", "SmokeTestModel",
              "PromoteModel", "DeploymentSucceeded"]
IRIS_ROWS = {"dataframe_split": {
    "columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                "petal width (cm)"],
    "data": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]]}}


def _serving_records(home: Path, model_name: str) -> list[Path]:
    return sorted((home / "serving" / model_name).glob("v*.json"))


@pytest.fixture(scope="module")
def iris(api: Client) -> dict[str, Any]:
    record = deploy(api, {"model_name": "iris-e2e",
                          "script": (EXAMPLES / "iris_sklearn.py").read_text()})
    assert record["status"] == "SUCCEEDED", record.get("error")
    return record


def test_happy_path_visits_every_state(iris: dict[str, Any]) -> None:
    names = [step["name"] for step in iris["steps"]]
    for state in HAPPY_PATH:
        assert state in names, f"{state} missing from {names}"
    assert all(step["status"] == "SUCCEEDED" for step in iris["steps"])
    result = iris["result"]
    assert result["status"] == "SUCCEEDED"
    assert result["model_name"] == "iris-e2e"
    assert result["inference_url"].startswith("http://127.0.0.1:")
    assert "@sha256:" in result["image_uri"]
    assert result["deployment_time_seconds"] > 0


def test_prediction_over_http_matches_model_from_mlflow(
        iris: dict[str, Any], local_stack: dict[str, Any]) -> None:
    import mlflow
    import pandas as pd

    result = iris["result"]
    status, body = post_json(f"{result['inference_url']}/invocations", IRIS_ROWS)
    assert status == 200
    mlflow.set_tracking_uri(local_stack["mlflow"])
    model = mlflow.pyfunc.load_model(f"models:/iris-e2e/{result['model_version']}")
    split = IRIS_ROWS["dataframe_split"]
    expected = model.predict(pd.DataFrame(split["data"], columns=split["columns"]))
    assert body["predictions"] == [int(v) for v in expected]
    # and the alias moved to the version that serves
    client = mlflow.MlflowClient(tracking_uri=local_stack["mlflow"])
    assert client.get_model_version_by_alias("iris-e2e", "live").version == \
        result["model_version"]


def test_bad_payload_gets_the_structured_400(iris: dict[str, Any]) -> None:
    """A request that breaks the signature (a column missing) is MLflow's 400 plus the list
    of what is wrong; no traceback (issue 14)."""
    split = IRIS_ROWS["dataframe_split"]
    status, body = post_json(f"{iris['result']['inference_url']}/invocations",
                             {"dataframe_split": {"columns": split["columns"][:3],
                                                  "data": [r[:3] for r in split["data"]]}})
    assert status == 400
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert body["errors"] == [{"column": "petal width (cm)", "expected": "double",
                               "received": None, "problem": "missing"}]
    assert "stack_trace" not in body


def test_run_binding_tags_the_run_with_the_deployment(
        iris: dict[str, Any], local_stack: dict[str, Any]) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=local_stack["mlflow"])
    run = client.get_run(iris["result"]["run_id"])
    assert run.data.tags["trainship.deployment_id"] == iris["deployment_id"]
    assert "accuracy" in run.data.metrics
    version = client.get_model_version("iris-e2e", iris["result"]["model_version"])
    assert version.tags["trainship.deployment_id"] == iris["deployment_id"]
    assert version.run_id == run.info.run_id


def test_logs_are_kept_and_reachable(api: Client, iris: dict[str, Any]) -> None:
    logs = api.logs(iris["deployment_id"])
    assert "TrainModel build" in logs and "BuildImage build" in logs
    assert f"bound to MLflow run {iris['result']['run_id']}" in logs
    assert "Phase complete: BUILD State: SUCCEEDED" in logs


def test_original_mlops_deploy_request_shape(api: Client, local_stack: dict[str, Any]) -> None:
    """The original test script (RandomForest, log_model(model, 'model')), unchanged, sent
    as script_content base64 to the original path."""
    script = (EXAMPLES / "mlops_deploy_original.py").read_text()
    accepted = api.request("POST", "/mlops/deploy", {
        "model_name": "rf-original",
        "script_content": base64.b64encode(script.encode()).decode(),
        "timeout": 600})
    record = wait_done(api, accepted["deployment_id"])
    assert record["status"] == "SUCCEEDED", record.get("error")
    status, body = post_json(f"{record['result']['inference_url']}/invocations",
                             {"inputs": [[0.1] * 20, [-1.0] * 20]})
    assert status == 200
    assert len(body["predictions"]) == 2
    assert set(body["predictions"]) <= {0, 1}


@pytest.mark.parametrize(("name", "script", "timeout", "error", "step", "in_details"), [
    ("no-model", "import mlflow\nwith mlflow.start_run():\n    mlflow.log_metric('x', 1)\n",
     300, "NoModelLogged", "RegisterModel", ""),
    ("syntax", "import mlflow\ndef broken(:\n    pass\n", 300, "ScriptSyntaxError",
     "TrainModel", "def broken(:"),
    ("slow", "import time\nprint('working', flush=True)\ntime.sleep(600)\n", 5,
     "ScriptTimeout", "TrainModel", "working"),
    ("missing-module", "import mlflow\nimport surely_not_a_module_xyz\n", 300,
     "MissingRequirement", "TrainModel", "surely_not_a_module_xyz"),
    ("no-mlflow", "print('I train nothing')\n", 300, "NoMlflowRun", "RegisterModel", ""),
])
def test_bad_scripts_fail_with_their_own_error(api: Client, local_home: Path, name: str,
                                              script: str, timeout: int, error: str,
                                              step: str, in_details: str) -> None:
    record = deploy(api, {"model_name": f"bad-{name}", "script": script,
                          "timeout_seconds": timeout})
    assert record["status"] == "FAILED"
    doc = record["error"]
    assert doc["error"] == error, doc
    assert doc["step"] == step
    assert doc["help"] and doc["message"]
    assert in_details in doc["details"]
    failed = [s["name"] for s in record["steps"] if s["status"] == "FAILED"]
    assert failed[0] == step
    assert "DeployModel" not in [s["name"] for s in record["steps"]]
    assert _serving_records(local_home, f"bad-{name}") == []


def test_invalid_body_is_400_and_starts_nothing(api: Client, local_stack: dict[str, Any]
                                                ) -> None:
    before = len(api.list())
    for body in ({"model_name": "bad name", "script": "x"},
                 {"model_name": "ok", "script": "print(1)", "requirements": ["--index-url x"]},
                 {"model_name": "ok", "script_content": "not base64!!"},
                 {"model_name": "ok", "script": "print(1)", "surprise": 1}):
        with pytest.raises(ApiError) as caught:
            api.submit(body)
        assert caught.value.status == 400
        doc = caught.value.document
        assert doc["error"] == "InvalidRequest"
        assert doc["message"] and doc["help"] and "details" in doc
    # not JSON at all
    request = urllib.request.Request(f"{local_stack['api']}/deployments", data=b"{nope",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(request, timeout=10)
    assert raw.value.code == 400
    assert json.loads(raw.value.read())["error"] == "InvalidRequest"
    assert len(api.list()) == before


def test_aws_cli_reads_execution_history(iris: dict[str, Any],
                                         local_stack: dict[str, Any]) -> None:
    aws = Path(sys.executable).with_name("aws")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
           "AWS_DEFAULT_REGION": "us-east-1"}
    endpoint = ["--endpoint-url", local_stack["stepfunctions"]]
    listed = json.loads(subprocess.run(
        [str(aws), "stepfunctions", *endpoint, "list-executions", "--state-machine-arn",
         local_stack["state_machine_arn"]], env=env, check=True, capture_output=True,
        text=True).stdout)
    names = [e["name"] for e in listed["executions"]]
    assert iris["deployment_id"] in names
    history = json.loads(subprocess.run(
        [str(aws), "stepfunctions", *endpoint, "get-execution-history", "--execution-arn",
         iris["execution_arn"]], env=env, check=True, capture_output=True, text=True).stdout)
    entered = [e["stateEnteredEventDetails"]["name"] for e in history["events"]
               if "stateEnteredEventDetails" in e]
    for state in HAPPY_PATH:
        assert state in entered
    # the example logs an input example: SmokeTestModel posted it (not "no input example")
    smoke = [json.loads(e["stateExitedEventDetails"]["output"]) for e in history["events"]
             if e.get("stateExitedEventDetails", {}).get("name") == "SmokeTestModel"]
    assert smoke and smoke[-1]["smoke_test"]["ran"] is True, smoke


def test_cli_deploy_prints_result_and_fails_nonzero(local_stack: dict[str, Any],
                                                    tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def nope(:\n")
    env = {**os.environ, "TRAINSHIP_API": local_stack["api"]}
    proc = subprocess.run([sys.executable, "-m", "trainship.cli", "deploy", str(bad),
                           "--model-name", "cli-bad", "--output", "json"],
                          env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["status"] == "FAILED" and out["error"] == "ScriptSyntaxError"
    listing = subprocess.run([sys.executable, "-m", "trainship.cli", "list"], env=env,
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out["deployment_id"] in listing.stdout


@pytest.mark.parametrize(("script", "rows"), [
    ("autolog_no_start_run.py", [[0.01] * 10]),
    ("mlflow2_artifact_layout.py", [[5.1, 3.5, 1.4, 0.2]]),
    ("log_model_no_start_run.py", [[13.0, 2.0, 2.4, 19.0, 100.0, 2.5, 2.5, 0.3, 1.6, 5.0,
                                    1.0, 3.0, 1000.0]]),
])
def test_other_script_styles_deploy(api: Client, script: str, rows: list[list[float]]
                                    ) -> None:
    name = script.split(".")[0].replace("_", "-")
    record = deploy(api, {"model_name": name, "script": (EXAMPLES / script).read_text()})
    assert record["status"] == "SUCCEEDED", record.get("error")
    status, body = post_json(f"{record['result']['inference_url']}/invocations",
                             {"inputs": rows})
    assert status == 200, body
    assert len(body["predictions"]) == 1


def test_largest_request_reaches_the_builds(api: Client) -> None:
    """As many requirements as a request may give, each as long as it may be: the state is
    about 11 KB of JSON, over CodeBuild's 4096-character limit for an environment value
    (the previous definition ended here with CodeBuild.InvalidInputException). The job
    reaches the build as a staged document (TRAINSHIP_JOB_URI): the runner installs the
    requirements (false markers: pip skips them without asking an index) and runs the
    script, which logs nothing, so the deployment ends at RegisterModel."""
    from trainship.request import MAX_REQUIREMENT_CHARS, MAX_REQUIREMENTS

    marker = '; python_version < "3"'
    requirements = []
    for i in range(MAX_REQUIREMENTS):
        name = f"p{i:02d}"
        filler = "a" * (MAX_REQUIREMENT_CHARS - len(name) - len("==1.0") - len(marker))
        requirements.append(f"{name}{filler}==1.0{marker}")
    assert all(len(r) == MAX_REQUIREMENT_CHARS for r in requirements)
    assert len(json.dumps(requirements)) > 4096
    record = deploy(api, {"model_name": "large-request", "script": "print('trained')\n",
                          "requirements": requirements})
    assert record["status"] == "FAILED"
    assert record["error"]["error"] == "NoMlflowRun", record["error"]
    statuses = {step["name"]: step["status"] for step in record["steps"]}
    assert statuses["TrainModel"] == "SUCCEEDED", statuses
