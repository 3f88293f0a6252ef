"""The training script's own credentials, end to end on the local stack.

The local MLflow sits behind a gate that authenticates SigV4 and authorises with the
script session's policy, as SageMaker managed MLflow and S3 do on AWS: a script without
its credentials cannot log, and with them it can log to its own run and nothing more.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import EXAMPLES, deploy
from trainship.client import Client

pytestmark = pytest.mark.e2e

DROP_CREDENTIALS = """\
import os
# what a script sees when the runner gives it no credentials (the old behaviour)
os.environ.pop("AWS_CONTAINER_CREDENTIALS_FULL_URI", None)
os.environ.pop("AWS_CONTAINER_AUTHORIZATION_TOKEN", None)
"""

SWALLOW = """\
import mlflow

try:
    with mlflow.start_run():
        mlflow.log_metric("accuracy", 0.9)
except Exception as exc:  # the script carries on and exits 0
    print("logging failed:", type(exc).__name__, flush=True)
"""

PROBE = """

# --- what the session must refuse -------------------------------------------------------
import tempfile

from mlflow import MlflowClient
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository


def refused(label, call):
    try:
        call()
    except Exception as exc:  # MlflowException; requests' HTTPError for artifact uploads
        denied = "PERMISSION_DENIED" in str(exc) or "403" in str(exc)
        print(f"{label}: {'DENIED' if denied else 'FAILED ' + str(exc)[:300]}", flush=True)
    else:
        print(f"{label}: ALLOWED", flush=True)


client = MlflowClient()
run = mlflow.last_active_run()  # the run ended: MLflow cleared MLFLOW_RUN_ID
experiment = run.info.experiment_id
refused("register-model", lambda: client.create_registered_model("stolen-by-script"))
refused("create-version", lambda: client.create_model_version(
    "credentials-e2e", f"runs:/{run.info.run_id}/model", run.info.run_id))
refused("delete-run", lambda: client.delete_run(run.info.run_id))
refused("create-run", lambda: client.create_run(experiment))
with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
    handle.write("overwritten by another deployment's script")
other = get_artifact_repository(f"mlflow-artifacts:/{experiment}/someoneelsesrun/artifacts")
refused("other-run-artifacts", lambda: other.log_artifact(handle.name))
mine = get_artifact_repository(run.info.artifact_uri)
refused("own-run-artifacts", lambda: mine.log_artifact(handle.name))
"""


@pytest.mark.parametrize(("script", "error", "step"), [
    (DROP_CREDENTIALS + (EXAMPLES / "iris_sklearn.py").read_text(), "ScriptFailed",
     "TrainModel"),
    (DROP_CREDENTIALS + SWALLOW, "NoMlflowRun", "RegisterModel"),
], ids=["raises", "swallows"])
def test_a_script_without_its_credentials_cannot_log(api: Client, script: str, error: str,
                                                     step: str) -> None:
    record = deploy(api, {"model_name": "no-credentials-e2e", "script": script})
    assert record["status"] == "FAILED"
    doc = record["error"]
    assert (doc["error"], doc["step"]) == (error, step), doc
    logs = api.logs(record["deployment_id"])
    assert "the script gets its own session" in logs
    if error == "ScriptFailed":  # the signer found no credentials to sign with
        assert "requests_auth_aws_sigv4" in doc["details"], doc["details"]


def test_the_script_session_logs_its_run_and_nothing_else(
        api: Client, local_stack: dict[str, Any]) -> None:
    import mlflow

    script = (EXAMPLES / "iris_sklearn.py").read_text() + PROBE
    record = deploy(api, {"model_name": "credentials-e2e", "script": script})
    assert record["status"] == "SUCCEEDED", record.get("error")
    logs = api.logs(record["deployment_id"])
    for label in ("register-model", "create-version", "delete-run", "create-run",
                  "other-run-artifacts"):
        assert f"{label}: DENIED" in logs, logs[-3000:]
    assert "own-run-artifacts: ALLOWED" in logs
    client = mlflow.MlflowClient(tracking_uri=local_stack["mlflow"])
    assert client.search_registered_models("name = 'stolen-by-script'") == []
    run = client.get_run(record["result"]["run_id"])
    assert run.info.lifecycle_stage == "active"
    # the registration the pipeline itself made (RegisterModel, with the stack's role)
    assert client.get_model_version("credentials-e2e", record["result"]["model_version"])
