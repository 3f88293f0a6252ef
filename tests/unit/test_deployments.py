"""DeploymentStore against Step Functions (and CloudWatch Logs) in moto: starting, status
records from DescribeExecution and the history, the list, build logs, the local archive
that outlives a restart, and redaction of the process's secrets."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import boto3
import pytest
from moto import mock_aws
from moto.core.config import DefaultConfig

from trainship.deployments import INTERRUPTED, DeploymentStore, read_build_log
from trainship.deployments.archive import Archive
from trainship.errors import DeploymentNotFound
from trainship.records import RecordJson
from trainship.redaction import REDACTED

DOCUMENT = {"error": "ScriptFailed", "message": "The script raised ValueError",
            "details": "Traceback ...", "help": "Fix the script", "step": "TrainModel"}
# Input {"kind": ...} picks the ending; otherwise the input is the output.
MACHINE = {
    "StartAt": "ValidateRequest",
    "States": {
        "ValidateRequest": {"Type": "Choice", "Default": "PromoteModel", "Choices": [
            {"Variable": "$.kind", "StringEquals": "document", "Next": "FailWithDocument"},
            {"Variable": "$.kind", "StringEquals": "plain", "Next": "FailPlainly"}]},
        "PromoteModel": {"Type": "Pass", "Next": "DeploymentSucceeded"},
        "DeploymentSucceeded": {"Type": "Succeed"},
        "FailWithDocument": {"Type": "Fail", "Error": "ScriptFailed",
                             "Cause": json.dumps(DOCUMENT)},
        "FailPlainly": {"Type": "Fail", "Error": "BuildCrashed", "Cause": "it broke"},
    },
}


class Aws:
    """One moto account; ``restart()`` loses every execution, as a local stack restart
    loses moto's state."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, execute: bool) -> None:
        for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                            "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            monkeypatch.setenv(name, value)
        self.config: DefaultConfig = {"stepfunctions": {"execute_state_machine": execute}}
        self.mock = mock_aws(config=self.config)
        self.mock.start()
        self.sfn = boto3.client("stepfunctions")
        self.arn = self._machine()

    def _machine(self) -> str:
        return str(self.sfn.create_state_machine(
            name="TrainAndDeploy", definition=json.dumps(MACHINE),
            roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"])

    def restart(self) -> None:
        self.mock.stop()
        self.mock = mock_aws(config=self.config)
        self.mock.start()
        self.sfn = boto3.client("stepfunctions")
        assert self._machine() == self.arn

    def store(self, archive: Path | None = None) -> DeploymentStore:
        return DeploymentStore(self.sfn, self.arn, str(archive) if archive else "")

    def wait(self, deployment_id: str) -> None:
        arn = self.store().execution_arn(deployment_id)
        for _ in range(200):
            if self.sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
                return
            time.sleep(0.05)
        raise AssertionError(f"{deployment_id} still running")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """Executions run MACHINE (moto's ASL interpreter)."""
    env = Aws(monkeypatch, execute=True)
    yield env
    env.mock.stop()


@pytest.fixture
def idle_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """Executions stay RUNNING until stopped."""
    env = Aws(monkeypatch, execute=False)
    yield env
    env.mock.stop()


def test_start_returns_the_execution_named_after_the_deployment(idle_aws: Aws) -> None:
    store = idle_aws.store()
    arn = store.start("d-1", {"model_name": "iris", "script": "x"})
    assert arn == store.execution_arn("d-1")
    assert store.execution_input("d-1") == {"model_name": "iris", "script": "x"}
    record = store.get("d-1")
    assert record["status"] == "RUNNING" and record["execution_arn"] == arn
    assert "result" not in record and "error" not in record


def test_the_same_id_with_another_input_is_refused(idle_aws: Aws) -> None:
    store = idle_aws.store()
    store.start("d-1", {"model_name": "iris"})
    assert store.start("d-1", {"model_name": "iris"}) == store.execution_arn("d-1")
    with pytest.raises(store.sfn.exceptions.ExecutionAlreadyExists):
        store.start("d-1", {"model_name": "other"})


def test_a_succeeded_execution_has_its_output_as_result_and_its_steps(aws: Aws) -> None:
    store = aws.store()
    store.start("d-ok", {"model_name": "iris", "inference_url": "http://m"})
    aws.wait("d-ok")
    record = store.get("d-ok")
    assert record["status"] == "SUCCEEDED"
    assert record["result"] == {"model_name": "iris", "inference_url": "http://m"}
    names = [step["name"] for step in record["steps"]]
    assert names[:2] == ["ValidateRequest", "PromoteModel"]
    assert record["current_step"] == names[-1]
    assert all(step["status"] == "SUCCEEDED" and step["seconds"] >= 0
               for step in record["steps"])
    assert record["started_at"] <= record["stopped_at"]
    assert record["builds"] == [] and "error" not in record


def test_a_failure_cause_that_is_an_error_document_is_the_error(aws: Aws) -> None:
    store = aws.store()
    store.start("d-doc", {"kind": "document"})
    aws.wait("d-doc")
    record = store.get("d-doc")
    assert record["status"] == "FAILED" and record["error"] == DOCUMENT
    assert "result" not in record


def test_any_other_failure_becomes_an_error_document(aws: Aws) -> None:
    store = aws.store()
    store.start("d-plain", {"kind": "plain"})
    aws.wait("d-plain")
    error = store.get("d-plain")["error"]
    assert (error["error"], error["message"]) == ("BuildCrashed", "it broke")


def test_a_stopped_execution_is_aborted_with_an_error(idle_aws: Aws) -> None:
    store = idle_aws.store()
    arn = store.start("d-stop", {"model_name": "iris"})
    idle_aws.sfn.stop_execution(executionArn=arn)
    record = store.get("d-stop")
    assert record["status"] == "ABORTED" and record["error"]["error"] == "ABORTED"


def test_an_unknown_deployment_is_not_found(idle_aws: Aws, tmp_path: Path) -> None:
    for store in (idle_aws.store(), idle_aws.store(tmp_path / "archive")):
        with pytest.raises(DeploymentNotFound, match="d-nope"):
            store.get("d-nope")
        with pytest.raises(DeploymentNotFound):
            store.logs("d-nope")


def test_recent_is_newest_first_and_limited(idle_aws: Aws) -> None:
    store = idle_aws.store()
    for index in range(4):
        store.start(f"d-{index}", {"n": index})
    assert [item["deployment_id"] for item in store.recent()] == ["d-3", "d-2", "d-1", "d-0"]
    assert [item["deployment_id"] for item in store.recent(limit=2)] == ["d-3", "d-2"]
    assert set(store.recent()[0]) == {"deployment_id", "status", "started_at", "stopped_at"}


# --- the local archive ----------------------------------------------------------------------

def test_a_finished_deployment_outlives_a_restart(aws: Aws, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    store = aws.store(archive)
    store.start("d-kept", {"model_name": "iris"})
    assert json.loads((archive / "d-kept.json").read_text())["running"] is True
    assert store.recent() and all(i["deployment_id"] == "d-kept" for i in store.recent())
    aws.wait("d-kept")
    store.sync_archive()
    before = store.get("d-kept")
    aws.restart()
    store = aws.store(archive)
    assert store.get("d-kept") == before
    assert [item["deployment_id"] for item in store.recent()] == ["d-kept"]
    assert store.recent()[0]["status"] == "SUCCEEDED"


def test_archive_records_are_their_owners_only(tmp_path: Path) -> None:
    """A finished record can carry result.inference_token: 0700 directory, 0600 files, also
    for an archive directory made earlier with another mode."""
    directory = tmp_path / "archive"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    archive = Archive(directory)
    archive.mark_running("d-1", None)
    record = cast(RecordJson, {"deployment_id": "d-1", "status": "SUCCEEDED",
                               "result": {"inference_token": "tsk_secret"}})
    archive.keep(record)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert [stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()] == [0o600]
    assert archive.finished("d-1") == record
    fresh = Archive(tmp_path / "new" / "archive")
    fresh.mark_running("d-2", None)
    assert stat.S_IMODE(fresh.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((fresh.directory / "d-2.json").stat().st_mode) == 0o600


def test_a_deployment_running_at_a_restart_is_marked_interrupted(idle_aws: Aws,
                                                                 tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    idle_aws.store(archive).start("d-cut", {"model_name": "iris"})
    idle_aws.restart()
    store = idle_aws.store(archive)
    with pytest.raises(DeploymentNotFound):  # still "running" in the archive: unknown
        store.get("d-cut")
    assert store.mark_interrupted() == ["d-cut"]
    record = store.get("d-cut")
    assert record["status"] == "FAILED" and record["error"]["error"] == INTERRUPTED
    assert store.mark_interrupted() == []
    assert "===== error =====" in store.logs("d-cut")


# --- logs and secrets -----------------------------------------------------------------------

def test_logs_hold_each_build_log_then_the_error(idle_aws: Aws, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    build_log = tmp_path / "train build.log"
    build_log.write_text("pip install ...\ntraining done\n")
    (archive / "d-logs.json").write_text(json.dumps({
        "deployment_id": "d-logs", "status": "FAILED", "steps": [], "error": DOCUMENT,
        "builds": [{"step": "TrainModel", "build_id": "train:1", "status": "SUCCEEDED",
                    "logs": {"DeepLink": build_log.as_uri()}}]}))
    text = idle_aws.store(archive).logs("d-logs")
    assert text.index("===== TrainModel build train:1 (SUCCEEDED) =====") \
        < text.index("training done") < text.index("===== error =====") \
        < text.index(DOCUMENT["message"])


def test_a_build_log_is_read_from_cloudwatch_logs(idle_aws: Aws) -> None:
    logs = boto3.client("logs")
    now = int(time.time() * 1000)  # CloudWatch refuses events older than 14 days
    logs.create_log_group(logGroupName="/aws/codebuild/train")
    logs.create_log_stream(logGroupName="/aws/codebuild/train", logStreamName="b1")
    logs.put_log_events(logGroupName="/aws/codebuild/train", logStreamName="b1",
                        logEvents=[{"timestamp": now + i, "message": f"line {i}\n"}
                                   for i in range(3)])
    where = {"GroupName": "/aws/codebuild/train", "StreamName": "b1"}
    assert read_build_log(where) == "line 0\nline 1\nline 2"
    assert read_build_log(where, limit_bytes=6) == "line 2"
    assert read_build_log({}) == ""


def test_the_process_secrets_are_redacted(aws: Aws, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-value-0123456789"
    monkeypatch.setenv("TRAINSHIP_TEST_API_SECRET", secret)
    store = aws.store(tmp_path / "archive")
    store.start("d-leak", {"kind": "document", "echo": f"token={secret}"})
    store.start("d-echo", {"echo": f"token={secret}"})
    aws.wait("d-leak")
    aws.wait("d-echo")
    record = store.get("d-echo")
    assert record["result"]["echo"] == f"token={REDACTED}"
    assert secret not in json.dumps(record)
    assert secret not in store.logs("d-leak") + json.dumps(store.get("d-leak"))


# --- reads never write ----------------------------------------------------------------------

def test_reading_a_finished_deployment_leaves_the_archive_alone(aws: Aws,
                                                                tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    store = aws.store(archive)
    store.start("d-read", {"model_name": "iris"})
    aws.wait("d-read")
    marker = (archive / "d-read.json").read_text()
    assert store.get("d-read")["status"] == "SUCCEEDED"
    store.logs("d-read")
    store.recent()
    assert (archive / "d-read.json").read_text() == marker  # still the running marker
    assert store.sync_archive() == ["d-read"]
    assert json.loads((archive / "d-read.json").read_text()) == store.get("d-read")
    assert store.sync_archive() == []  # archived once


def test_sync_archives_an_execution_started_elsewhere(aws: Aws, tmp_path: Path) -> None:
    """`aws stepfunctions start-execution` against the local stack: no running marker, and
    it still outlives a restart."""
    archive = tmp_path / "archive"
    aws.sfn.start_execution(stateMachineArn=aws.arn, name="d-cli", input="{}")
    aws.wait("d-cli")
    store = aws.store(archive)
    assert store.sync_archive() == ["d-cli"]
    before = store.get("d-cli")
    aws.restart()
    assert aws.store(archive).get("d-cli") == before


def test_sync_leaves_a_running_deployment_marked_running(idle_aws: Aws,
                                                         tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    store = idle_aws.store(archive)
    store.start("d-busy", {"model_name": "iris"})
    assert store.sync_archive() == []
    assert json.loads((archive / "d-busy.json").read_text())["running"] is True
