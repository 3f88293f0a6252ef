"""Reliability: injected faults, concurrency, secrets (malformed input and bad scripts
are in test_reliability.py).

Every case ends in a clear answer and a consistent record, and what serves stays up.
docs/reliability.md lists the cases and their observed outcomes.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.helpers import (
    PLANTED_SECRET,
    QUICK_SCRIPT,
    assert_still_serving,
    deploy,
    wait_done,
)
from trainship.client import ApiError, Client
from trainship.cluster.process import ProcessDriver
from trainship.local import stack
from trainship.procs import pid_alive

pytestmark = pytest.mark.e2e


def history(info: dict[str, Any], execution_arn: str) -> list[dict[str, Any]]:
    client = boto3.client("stepfunctions", endpoint_url=info["stepfunctions"],
                          region_name="us-east-1", aws_access_key_id="local",
                          aws_secret_access_key="local")
    events: list[dict[str, Any]] = client.get_execution_history(
        executionArn=execution_arn, maxResults=1000)["events"]
    return events


# --- 3. fault injection ----------------------------------------------------------------------

def test_transient_faults_are_retried_and_the_deployment_succeeds(
        api: Client, local_home: Path, local_stack: dict[str, Any]) -> None:
    faults = {
        "ValidateRequest": {"error": "Lambda.ServiceException", "times": 1},
        "TrainModel": {"error": "CodeBuild.AWSCodeBuildException", "times": 1},
        "RegisterModel": {"error": "Lambda.TooManyRequestsException", "times": 2},
        "DeployModel": {"error": "TransientError", "times": 1},
        "PromoteModel": {"error": "Lambda.SdkClientException", "times": 1},
    }
    (local_home / "faults.json").write_text(json.dumps(faults))
    try:
        record = deploy(api, {"model_name": "flaky", "script": QUICK_SCRIPT})
    finally:
        (local_home / "faults.json").unlink(missing_ok=True)
    assert record["status"] == "SUCCEEDED", record.get("error")
    failed = [e for e in history(local_stack, record["execution_arn"])
              if e["type"] == "TaskFailed"]
    assert sorted(e["taskFailedEventDetails"]["error"] for e in failed) == sorted(
        f["error"] for f in faults.values() for _ in range(f["times"]))
    assert_still_serving(record["result"])


def test_permanent_fault_fails_cleanly_and_keeps_the_old_version(
        api: Client, local_home: Path, serving: dict[str, Any]) -> None:
    (local_home / "faults.json").write_text(json.dumps(
        {"PromoteModel": {"error": "Lambda.ServiceException", "cause": "injected outage",
                          "times": 10}}))
    try:
        record = deploy(api, {"model_name": "steady", "script": QUICK_SCRIPT})
    finally:
        (local_home / "faults.json").unlink(missing_ok=True)
    assert record["status"] == "FAILED"
    doc = record["error"]
    assert doc["error"] == "Lambda.ServiceException" and "injected outage" in doc["message"]
    assert doc["help"]
    # the new version was started, then removed; the old one serves at its URL
    records = ProcessDriver(local_home / "serving").records("steady")
    assert [r["url"] for r in records] == [serving["inference_url"]]
    assert_still_serving(serving)


def test_stopping_the_stack_mid_deployment_leaves_a_consistent_record(tmp_path: Path) -> None:
    home = tmp_path / "home"
    info = stack.up(home)
    client = Client(info["api"])
    accepted = client.submit({"model_name": "interrupted",
                              "script": "import time\nprint('working', flush=True)\n"
                                        "time.sleep(300)\n"})
    deadline = time.monotonic() + 120
    script_pids: list[int] = []
    while time.monotonic() < deadline and not script_pids:
        script_pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                       and _cmdline(p).endswith("train.py") and str(home) in _cwd(p)]
        time.sleep(0.5)
    assert script_pids, "the training script never started"
    assert stack.down(home)
    assert not any(pid_alive(pid) for pid in script_pids), "orphaned training script"
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit()
                and str(home) in _cmdline(p)], "orphaned processes of the stopped stack"
    info = stack.up(home)
    try:
        record = Client(info["api"]).get(accepted["deployment_id"])
        assert record["status"] == "FAILED"
        assert record["error"]["error"] == "LocalStackRestarted"
        assert record["error"]["help"]
    finally:
        stack.down(home)


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _cwd(proc: Path) -> str:
    try:
        return os.readlink(proc / "cwd")
    except OSError:
        return ""


# --- 4. concurrency --------------------------------------------------------------------------

def test_five_concurrent_deployments_of_one_model(api: Client, local_home: Path,
                                                  local_stack: dict[str, Any]) -> None:
    import mlflow

    with ThreadPoolExecutor(max_workers=5) as pool:
        records = list(pool.map(lambda _: deploy(api, {"model_name": "crowd",
                                                       "script": QUICK_SCRIPT}), range(5)))
    statuses = [r["status"] for r in records]
    assert statuses == ["SUCCEEDED"] * 5, [r.get("error") for r in records]
    versions = sorted(int(r["result"]["model_version"]) for r in records)
    assert versions == list(range(versions[0], versions[0] + 5))
    top = str(versions[-1])
    # deterministic: the highest version serves, alone; the alias points at it
    serving = ProcessDriver(local_home / "serving").records("crowd")
    assert [r["version"] for r in serving] == [top]
    assert all(pid_alive(r["pid"]) for r in serving)
    client = mlflow.MlflowClient(tracking_uri=local_stack["mlflow"])
    assert client.get_model_version_by_alias("crowd", "live").version == top
    # one URL for the model: every deployment's, the one the top version answers at; a
    # version that went live first and was replaced later has no server any more (only the
    # top version's record and process remain, asserted above)
    assert {record["result"]["inference_url"] for record in records} == {serving[0]["url"]}
    with urllib.request.urlopen(f"{serving[0]['url']}/metrics", timeout=10) as response:
        assert f'model_version="{top}"' in response.read().decode()


def test_idempotency_key_gives_one_execution(api: Client, local_stack: dict[str, Any]) -> None:
    body = {"model_name": "idem", "script": QUICK_SCRIPT}
    first = api.submit(body, idempotency_key="release-42")
    again = api.submit(body, idempotency_key="release-42")
    assert first == again
    record = wait_done(api, first["deployment_id"])
    after = api.submit(body, idempotency_key="release-42")
    assert after["deployment_id"] == first["deployment_id"]
    names = [d["deployment_id"] for d in api.list()]
    assert names.count(first["deployment_id"]) == 1
    assert record["status"] == "SUCCEEDED"
    with pytest.raises(ApiError) as conflict:
        api.submit({**body, "replicas": 2}, idempotency_key="release-42")
    assert conflict.value.status == 409
    assert conflict.value.document["error"] == "IdempotencyConflict"


# --- 5. secrets --------------------------------------------------------------------------

def test_no_secret_reaches_the_script_or_the_logs(api: Client) -> None:
    script = ("import os, sys\nfor k, v in sorted(os.environ.items()):\n    print(k, '=', v)\n"
              f"print('echo of a known secret: {PLANTED_SECRET}')\nsys.exit(1)\n")
    record = deploy(api, {"model_name": "snoop", "script": script})
    assert record["status"] == "FAILED"
    logs = api.logs(record["deployment_id"])
    assert "PATH =" in logs  # the environment was printed
    for text in (logs, json.dumps(record)):
        assert PLANTED_SECRET not in text
        assert "AWS_SECRET_ACCESS_KEY" not in text
        assert "TRAINSHIP_TEST_API_SECRET" not in text
    assert "echo of a known secret: [REDACTED]" in logs
