"""RecordFailure builds the cluster driver only when there is a rollout to undo (issue 10,
item 5): a cluster that cannot be reached must not hide the error of an earlier step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from tests.helpers import FakeDriver, handle
from tests.unit.fake_kube import FakeKube
from trainship import steps
from trainship.cluster import ClusterDriver
from trainship.cluster.kubernetes import KubernetesDriver

TRAINING_ERROR = {"error": "ScriptTimeout", "message": "the script ran past 60 s",
                  "details": "tail", "help": "raise timeout_seconds", "step": "TrainModel"}


def failed_training(tmp_path: Path) -> dict[str, Any]:
    """The state RecordFailure gets after TrainModel failed: the Catch output with the
    CodeBuild build as the cause, and the document the build staged."""
    (tmp_path / "d-1").mkdir(exist_ok=True)
    (tmp_path / "d-1" / "error.json").write_text(json.dumps(TRAINING_ERROR))
    return {"deployment_id": "d-1", "model_name": "iris", "target": "kubernetes",
            "script_uri": str(tmp_path / "d-1" / "train.py"),
            "failure": {"Error": "States.TaskFailed", "Cause": json.dumps({"Build": {
                "Id": "trainship-train:1", "BuildStatus": "FAILED"}})}}


def no_cluster() -> ClusterDriver:
    raise RuntimeError("AccessDeniedException: not authorized to perform eks:DescribeCluster")


def test_training_error_survives_a_broken_cluster(tmp_path: Path) -> None:
    ctx = steps.FailureContext.model_validate(failed_training(tmp_path))
    out = steps.record_failure(ctx, cluster=no_cluster)
    assert out["error"] == "ScriptTimeout"
    assert json.loads(out["cause"]) == TRAINING_ERROR


def test_a_rollout_to_undo_still_builds_the_driver(tmp_path: Path) -> None:
    driver = FakeDriver([])
    built: list[int] = []

    def cluster() -> ClusterDriver:
        built.append(1)
        return driver

    ctx = steps.FailureContext.model_validate({
        **failed_training(tmp_path), "rollout": {"handle": handle("2")}})
    steps.record_failure(ctx, cluster=cluster)
    assert built == [1] and driver.discarded == [handle("2")]
    done = steps.FailureContext.model_validate({  # promoted already: nothing to undo
        **failed_training(tmp_path), "rollout": {"handle": handle("2")},
        "result": {"deployment_id": "d-1", "inference_url": "u", "invocations_url": "u",
                   "model_name": "iris", "model_version": "2", "model_uri": "m",
                   "run_id": "r", "image_uri": "i", "alias": "live",
                   "deployment_time_seconds": 1.0}})
    steps.record_failure(done, cluster=no_cluster)


def test_an_unreadable_rollout_still_gives_the_error_document(tmp_path: Path) -> None:
    """A handle without the keys every driver sets (a partial or edited state) cannot be
    undone, but RecordFailure still answers with the step's error, not a validation error."""
    ctx = steps.FailureContext.model_validate({
        **failed_training(tmp_path), "rollout": {"handle": {"pid": 1}}})
    assert ctx.rollout is None
    out = steps.record_failure(ctx, cluster=no_cluster)
    assert out["error"] == "ScriptTimeout"


def test_a_handle_its_driver_cannot_read_still_gives_the_error_document(
        tmp_path: Path, kube: tuple[FakeKube, KubernetesDriver]) -> None:
    """The common keys are there but not the driver's own (a Kubernetes handle without its
    namespace): the driver refuses it, RecordFailure still answers with the step's error."""
    ctx = steps.FailureContext.model_validate({
        **failed_training(tmp_path), "rollout": {"handle": handle("2")}})
    assert ctx.rollout is not None
    fake, driver = kube
    out = steps.record_failure(ctx, cluster=lambda: driver)
    assert out["error"] == "ScriptTimeout"
    assert not [c for c in fake.calls if c.method == "DELETE"]  # nothing it could name


def test_handler_on_a_stack_whose_eks_cluster_does_not_exist(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lambda as AWS runs it, with an EKS cluster name that DescribeCluster does not
    know (moto answers ResourceNotFoundException, as EKS does): the training error comes
    out, not a RecordFailure crash."""
    from lambdas import record_failure
    from trainship.local.lambda_runtime import LambdaContext

    for name, value in {"TRAINSHIP_CLUSTER": "kubernetes", "TRAINSHIP_EKS_CLUSTER": "missing",
                        "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1",
                        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "TRAINSHIP_STAGING_URI": str(tmp_path),
                        "TRAINSHIP_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        import boto3
        from botocore.exceptions import ClientError

        with pytest.raises(ClientError):  # what building the driver would run into
            boto3.client("eks", region_name="eu-west-1").describe_cluster(name="missing")
        out = record_failure.handler(failed_training(tmp_path), LambdaContext("RecordFailure"))
    assert out["error"] == "ScriptTimeout"
    assert json.loads(out["cause"])["message"] == TRAINING_ERROR["message"]
