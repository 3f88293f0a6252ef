"""Redrive on the local stack, the way docs/api.md and docs/deploy-to-aws.md tell a user to:
a deployment stopped (`aws stepfunctions stop-execution`) while BuildImage waits out a
build-service outage is ABORTED at BuildImage; `trainship redrive ID` resumes it there and
it SUCCEEDS without training again; `aws stepfunctions redrive-execution` refuses the
SUCCEEDED execution with ExecutionNotRedrivable, and `trainship redrive` with
DeploymentNotRedrivable. A build-service outage that outlasts BuildImage's retries FAILS
the deployment (caught and recorded); `trainship redrive ID` resumes it at BuildImage and it
SUCCEEDS, still with one training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import QUICK_SCRIPT, assert_still_serving, wait_done
from trainship.client import Client

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def aws(local_stack: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
           "AWS_DEFAULT_REGION": "us-east-1"}
    return subprocess.run([str(Path(sys.executable).with_name("aws")), "stepfunctions",
                           "--endpoint-url", local_stack["stepfunctions"], *args],
                          env=env, capture_output=True, text=True, timeout=60)


def entered(local_stack: dict[str, Any], execution_arn: str) -> list[str]:
    history = json.loads(aws(local_stack, "get-execution-history", "--execution-arn",
                             execution_arn).stdout)
    return [e["stateEnteredEventDetails"]["name"] if "stateEnteredEventDetails" in e
            else e["type"] for e in history["events"]
            if "stateEnteredEventDetails" in e or e["type"] == "ExecutionRedriven"]


def test_a_stopped_build_is_redriven_without_retraining(
        api: Client, local_home: Path, local_stack: dict[str, Any]) -> None:
    # the build service is down for two calls: BuildImage waits between its retries
    (local_home / "faults.json").write_text(json.dumps({"BuildImage": {
        "error": "CodeBuild.AWSCodeBuildException", "cause": "injected outage", "times": 2}}))
    try:
        accepted = api.submit({"model_name": "redriven", "script": QUICK_SCRIPT})
        deadline = time.monotonic() + 600
        record = api.get(accepted["deployment_id"])
        while record["current_step"] != "BuildImage" and time.monotonic() < deadline:
            assert record["status"] == "RUNNING", record
            time.sleep(0.2)
            record = api.get(accepted["deployment_id"])
        stopped = aws(local_stack, "stop-execution", "--execution-arn", record["execution_arn"])
        assert stopped.returncode == 0, stopped.stderr
        failed = wait_done(api, accepted["deployment_id"])
    finally:
        (local_home / "faults.json").unlink(missing_ok=True)
    assert failed["status"] == "ABORTED", failed
    assert failed["current_step"] == "BuildImage"

    proc = subprocess.run([sys.executable, "-m", "trainship.cli", "redrive",
                           failed["deployment_id"], "--api", local_stack["api"],
                           "--output", "json"],
                          capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "SUCCEEDED"  # what `trainship deploy` prints
    done = api.get(failed["deployment_id"])
    assert done["status"] == "SUCCEEDED" and done["execution_arn"] == failed["execution_arn"]
    assert_still_serving(done["result"])

    states = entered(local_stack, failed["execution_arn"])
    assert states.count("TrainModel") == 1, states  # no retraining
    assert states.count("BuildImage") == 2, states
    assert states.index("ExecutionRedriven") == states.index("BuildImage") + 1
    described = json.loads(aws(local_stack, "describe-execution", "--execution-arn",
                               failed["execution_arn"]).stdout)
    assert described["redriveCount"] == 1 and described["status"] == "SUCCEEDED"

    # a SUCCEEDED execution: Step Functions' own refusal, and the API's, change nothing
    refused = aws(local_stack, "redrive-execution", "--execution-arn", failed["execution_arn"])
    assert refused.returncode != 0 and "ExecutionNotRedrivable" in refused.stderr
    again = subprocess.run([sys.executable, "-m", "trainship.cli", "redrive",
                            failed["deployment_id"], "--api", local_stack["api"]],
                           capture_output=True, text=True, cwd=REPO, timeout=60)
    assert again.returncode != 0 and "DeploymentNotRedrivable" in again.stderr + again.stdout
    assert entered(local_stack, failed["execution_arn"]) == states


def test_a_failed_build_image_is_redriven_to_success_without_retraining(
        api: Client, local_home: Path, local_stack: dict[str, Any]) -> None:
    # down for the first attempt and all 3 retries: BuildImage fails, caught and recorded
    (local_home / "faults.json").write_text(json.dumps({"BuildImage": {
        "error": "CodeBuild.AWSCodeBuildException", "cause": "injected outage", "times": 4}}))
    try:
        accepted = api.submit({"model_name": "redriven_caught", "script": QUICK_SCRIPT})
        failed = wait_done(api, accepted["deployment_id"])
    finally:
        (local_home / "faults.json").unlink(missing_ok=True)
    assert failed["status"] == "FAILED", failed
    assert failed["current_step"] == "DeploymentFailed"
    doc = failed["error"]  # the error document, as before DeploymentFailed was a Task
    assert doc["error"] == "CodeBuild.AWSCodeBuildException" and doc["step"] == "BuildImage"
    assert "injected outage" in doc["message"] and "trainship redrive" in doc["help"]
    described = json.loads(aws(local_stack, "describe-execution", "--execution-arn",
                               failed["execution_arn"]).stdout)
    assert described["error"] == "CodeBuild.AWSCodeBuildException"
    assert described["redriveStatus"] == "REDRIVABLE"

    proc = subprocess.run([sys.executable, "-m", "trainship.cli", "redrive",
                           failed["deployment_id"], "--api", local_stack["api"],
                           "--output", "json"],
                          capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "SUCCEEDED"
    done = api.get(failed["deployment_id"])
    assert done["status"] == "SUCCEEDED" and done["execution_arn"] == failed["execution_arn"]
    assert "error" not in done
    assert_still_serving(done["result"])

    states = entered(local_stack, failed["execution_arn"])
    assert states.count("TrainModel") == 1, states  # no retraining
    redriven = states.index("ExecutionRedriven")
    assert states[redriven - 4:redriven] == [
        "BuildImage", "BuildImageCaught", "RecordFailure", "DeploymentFailed"], states
    assert states[redriven + 1:redriven + 4] == [
        "DeploymentFailed", "ResumeFailedStep", "BuildImage"], states
    assert states[-1] == "DeploymentSucceeded"
