"""trainship doctor's failures outside the cluster, each with its fix: the stack and its
outputs, the MLflow tracking server, the ECR repository (fakes in
tests/unit/doctor_fakes.py)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.unit.doctor_fakes import (
    ACCOUNT,
    CLUSTER,
    MLFLOW_ARN,
    MLFLOW_NAME,
    NAMESPACE,
    NOW,
    REGION,
    REPOSITORY,
    Account,
    Mlflow,
    by_name,
    by_name_list,
    create_repository,
    create_stack,
    outputs,
    run,
)
from trainship import doctor

pytestmark = pytest.mark.usefixtures("aws_env")


# --- failures, each with its fix ---------------------------------------------------------

@mock_aws
def test_no_stack() -> None:
    with Account() as account:
        report = run(account, None)
    (check,) = report.checks
    assert (check.name, check.status) == ("stack", "fail")
    assert check.message == f"no stack 'Trainship' in {REGION}"
    assert "cdk deploy" in check.fix
    assert not report.ok


def test_a_failed_stack_points_at_its_events() -> None:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with Stubber(cloudformation) as stub:
        stub.add_response("describe_stacks", {"Stacks": [{
            "StackName": "Trainship", "CreationTime": NOW, "StackStatus": "ROLLBACK_COMPLETE",
            "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/Trainship/1"}]},
            {"StackName": "Trainship"})
        _, check = doctor.read_stack(cloudformation, "Trainship", REGION)
    assert check.status == "fail"
    assert check.fix == ("read why: aws cloudformation describe-stack-events --stack-name "
                         f"Trainship --region {REGION}")


@mock_aws
def test_stopped_mlflow_server_in_another_region() -> None:
    create_stack(outputs(MlflowTrackingUri=MLFLOW_ARN.replace(REGION, "us-east-1")))
    create_repository()
    with Account() as account:
        account.green_cluster()
        account.mlflow(status="Stopped")
        report = run(account, None)
    check = by_name(report)["mlflow"]
    assert check.status == "fail"
    assert check.fix == ("aws sagemaker start-mlflow-tracking-server --tracking-server-name "
                         "trainship-mlflow --region us-east-1")
    assert ("sagemaker", "us-east-1") in account.regions  # the server's region, from its ARN
    assert ("ecr", REGION) in account.regions  # the repository's, from its URI


@mock_aws
def test_mlflow_2_managed_server() -> None:
    create_stack(outputs())
    create_repository()
    with Account() as account:
        account.green_cluster()
        account.mlflow(version="2.16.2")
        report = run(account, None)
    check = by_name(report)["mlflow-version"]
    assert check.status == "fail"
    assert "MLflow 2.16.2" in check.message and "LoggedModels" in check.message
    assert "create a tracking server with MLflow 3" in check.fix


@mock_aws
def test_missing_mlflow_server() -> None:
    create_stack(outputs())
    create_repository()
    with Account() as account:
        account.green_cluster()
        account.sagemaker_stub.add_client_error(
            "describe_mlflow_tracking_server", "ResourceNotFound", "not found", 400,
            expected_params={"TrackingServerName": MLFLOW_NAME})
        report = run(account, None)
    check = by_name(report)["mlflow"]
    assert (check.status, check.message) == ("fail", "no MLflow tracking server "
                                                     "'trainship-mlflow'")


def test_mlflow_url_checks() -> None:
    old, sick = Mlflow("2.22.0"), Mlflow(health=503)
    try:
        checks = by_name_list(doctor.check_mlflow_url(old.url))
        assert checks["mlflow"].status == "ok"
        assert checks["mlflow-version"].status == "fail"
        assert checks["mlflow-version"].fix == "upgrade the tracking server to MLflow 3"
        (check,) = doctor.check_mlflow_url(sick.url)
        assert check.status == "fail" and "/health answers 503" in check.message
    finally:
        old.close()
        sick.close()
    gone = Mlflow()
    url = gone.url
    gone.close()
    (check,) = doctor.check_mlflow_url(url)
    assert check.status == "warn" and "not reachable from here" in check.message


@mock_aws
def test_missing_repository() -> None:
    create_stack(outputs())
    with Account() as account:
        account.green_cluster()
        account.mlflow()
        report = run(account, None)
    check = by_name(report)["repository"]
    assert (check.status, check.message) == ("fail", f"no ECR repository {REPOSITORY} in "
                                                     f"{REGION}")
    assert "cdk deploy" in check.fix


@mock_aws
def test_a_stack_without_the_new_outputs() -> None:
    """A stack deployed before EksClusterName/EksNamespace/ClusterRoleArn existed."""
    create_stack(outputs(EksClusterName=None, EksNamespace=None, ClusterRoleArn=None,
                         LoadBalancerScheme=None))
    create_repository()
    with Account() as account:
        account.mlflow()
        report = run(account, None)
    check = by_name(report)["cluster"]
    assert check.status == "warn"
    assert "no EksClusterName output" in check.message and "--cluster NAME" in check.message
    # with --cluster/--namespace the cluster checks run; the role's entry cannot be checked
    with Account() as account:
        account.describe_cluster()
        account.mlflow()
        report = run(account, None, cluster_name=CLUSTER, namespace=NAMESPACE)
    checks = by_name(report)
    assert checks["cluster"].status == "ok"
    assert "no ClusterRoleArn output" in checks["access-entry"].message
