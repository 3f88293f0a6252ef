"""trainship doctor's failures on the cluster side, each with its fix: the EKS cluster,
its authentication mode and access entry, the namespace, the load balancer controller
(fakes in tests/unit/doctor_fakes.py)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from kubernetes import client as k8s
from moto import mock_aws

from tests.unit.doctor_fakes import (
    CLUSTER,
    EDIT,
    MLFLOW_NAME,
    NAMESPACE,
    REGION,
    ROLE_ARN,
    VIEW,
    Account,
    Unauthorized,
    by_name,
    create_repository,
    create_stack,
    green_account_report,
    outputs,
    policies,
    run,
    tracking_server,
)
from tests.unit.fake_kube import FakeKubeServer
from trainship import doctor, doctor_eks
from trainship.cluster.kube_api import KubeApi

pytestmark = pytest.mark.usefixtures("aws_env")


# --- failures, each with its fix ---------------------------------------------------------


@mock_aws
def test_no_cluster_against_moto() -> None:
    """moto's DescribeCluster answers ResourceNotFoundException for a missing cluster."""
    create_stack(outputs())
    create_repository()
    sagemaker = boto3.client("sagemaker", region_name=REGION)

    def clients(service: str, region: str) -> Any:
        return sagemaker if service == "sagemaker" else boto3.client(service, region_name=region)

    with Stubber(sagemaker) as stub:
        stub.add_response("describe_mlflow_tracking_server", tracking_server(),
                          {"TrackingServerName": MLFLOW_NAME})
        report = doctor.run("Trainship", REGION, clients, None)
    checks = by_name(report)
    assert checks["cluster"].status == "fail"
    assert checks["cluster"].message == f"no EKS cluster 'prod' in {REGION}"
    assert "trainship:eksClusterName" in checks["cluster"].fix
    # nothing that needs the cluster is reported as if it had been checked
    assert not {"authentication-mode", "access-entry", "namespace", "load-balancer"} & \
        set(checks)
    assert checks["repository"].status == "ok"


@mock_aws
def test_a_cluster_still_creating(eks: Any) -> None:
    fake, given, factory = eks
    create_stack(outputs(MlflowTrackingUri=None, RepositoryUri=None))
    with Account() as account:
        account.describe_cluster(status="CREATING")
        account.access(policies((EDIT, "namespace", [NAMESPACE])))
        report = run(account, factory)
    checks = by_name(report)
    assert (checks["cluster"].status, checks["cluster"].message) == (
        "fail", "cluster prod is CREATING, not ACTIVE")
    assert "mlflow" in checks and "repository" in checks  # their outputs are missing: warn
    assert not given and not fake.calls  # no API server to ask yet
    assert "namespace" not in checks and "load-balancer" not in checks


@mock_aws
def test_config_map_authentication_mode() -> None:
    """The EKS API's default is CONFIG_MAP; the access entry check is not even tried (the
    Stubber would fail on an unexpected call)."""
    create_stack(outputs())
    create_repository()
    with Account() as account:
        account.describe_cluster(accessConfig={"authenticationMode": "CONFIG_MAP"})
        account.mlflow()
        report = run(account, None)
    check = by_name(report)["authentication-mode"]
    assert check.status == "fail"
    assert check.fix == ("aws eks update-cluster-config --name prod "
                         "--access-config authenticationMode=API_AND_CONFIG_MAP")
    assert "access-entry" not in by_name(report)
    assert not report.ok


@mock_aws
def test_no_access_entry() -> None:
    create_stack(outputs())
    create_repository()
    with Account() as account:
        account.describe_cluster()
        account.eks_stub.add_client_error(
            "describe_access_entry", "ResourceNotFoundException",
            "The specified access entry resource is not found.", 404,
            expected_params={"clusterName": CLUSTER, "principalArn": ROLE_ARN})
        account.mlflow()
        report = run(account, None)
    check = by_name(report)["access-entry"]
    assert check.status == "fail"
    assert f"aws eks create-access-entry --cluster-name prod --principal-arn {ROLE_ARN}" \
        in check.fix
    assert "redeploy the stack" in check.fix


@mock_aws
def test_access_entries_refused_for_the_authentication_mode() -> None:
    """A cluster whose DescribeCluster names no mode: EKS's own answer to the access entry
    call says what is wrong."""
    create_stack(outputs())
    create_repository()
    with Account() as account:
        account.describe_cluster(accessConfig={})
        account.eks_stub.add_client_error(
            "describe_access_entry", "InvalidRequestException",
            "The cluster's authentication mode must be set to one of [API, "
            "API_AND_CONFIG_MAP] to perform this operation.", 400)
        account.mlflow()
        report = run(account, None)
    checks = by_name(report)
    assert checks["authentication-mode"].status == "warn"
    assert checks["access-entry"].status == "fail"
    assert checks["access-entry"].fix == (
        "aws eks update-cluster-config --name prod "
        "--access-config authenticationMode=API_AND_CONFIG_MAP")


@mock_aws
def test_edit_policy_scoped_to_another_namespace() -> None:
    create_stack(outputs())
    create_repository()
    with Account() as account:
        account.describe_cluster()
        account.access(policies((EDIT, "namespace", ["default"]), (VIEW, "cluster", [])))
        account.mlflow()
        report = run(account, None)
    check = by_name(report)["access-entry"]
    assert check.status == "fail"
    assert "AmazonEKSEditPolicy (namespace: default), AmazonEKSViewPolicy (cluster: -)" in \
        check.message
    assert check.fix == (f"aws eks associate-access-policy --cluster-name prod --principal-arn "
                         f"{ROLE_ARN} --policy-arn {EDIT} "
                         "--access-scope type=namespace,namespaces=models")


@mock_aws
def test_missing_namespace(eks: Any) -> None:
    fake, _, factory = eks
    fake.namespaces.discard(NAMESPACE)
    report = green_account_report(factory)
    check = by_name(report)["namespace"]
    assert (check.status, check.fix) == ("fail", "kubectl create namespace models")


@mock_aws
def test_no_cluster_access_for_the_caller_is_not_a_missing_namespace() -> None:
    create_stack(outputs())
    create_repository()
    with FakeKubeServer(Unauthorized()) as server:
        def factory(described: dict[str, Any], region: str) -> doctor_eks.KubeReader:
            configuration = k8s.Configuration()
            configuration.host = server.url
            return doctor_eks.KubeApiReader(KubeApi(k8s.ApiClient(configuration)))

        with Account() as account:
            account.green_cluster()
            account.mlflow()
            report = run(account, factory)
    checks = by_name(report)
    assert checks["namespace"].status == "warn"
    assert checks["namespace"].message.startswith(
        "cannot check namespace models: your identity has no cluster access (HTTP 401)")
    assert checks["load-balancer"].status == "warn"
    assert report.ok  # nothing is known to be wrong


@mock_aws
def test_a_namespace_scoped_caller_gets_403(eks: Any) -> None:
    fake, _, factory = eks
    fake.namespaces_forbidden = True
    report = green_account_report(factory)
    assert "your identity has no cluster access (HTTP 403)" in \
        by_name(report)["namespace"].message


@mock_aws
def test_no_load_balancer_controller(eks: Any) -> None:
    fake, _, factory = eks
    fake.objects.clear()
    report = green_account_report(factory)
    check = by_name(report)["load-balancer"]
    assert check.status == "warn"
    assert "legacy Classic Load Balancer" in check.message
    assert "AWS Load Balancer Controller" in check.fix


@mock_aws
def test_load_balancer_controller_without_replicas(eks: Any) -> None:
    fake, _, factory = eks
    fake.deployment_statuses = [{"replicas": 1, "availableReplicas": 0}]
    report = green_account_report(factory)
    check = by_name(report)["load-balancer"]
    assert check.status == "fail"
    assert check.fix == "kubectl -n kube-system describe deployment aws-load-balancer-controller"


@mock_aws
def test_without_the_kubernetes_client_the_cluster_checks_say_what_to_install() -> None:
    def factory(described: dict[str, Any], region: str) -> doctor_eks.KubeReader:
        raise ImportError("No module named 'kubernetes'")

    report = green_account_report(factory)
    checks = by_name(report)
    assert checks["namespace"].status == "warn"
    assert "pip install 'trainship[lambda]'" in checks["namespace"].message


@mock_aws
def test_access_denied_is_cannot_check() -> None:
    create_stack(outputs())
    create_repository()
    with Account() as account:
        account.eks_stub.add_client_error("describe_cluster", "AccessDeniedException",
                                          "not authorized", 403)
        account.mlflow()
        report = run(account, None)
    check = by_name(report)["cluster"]
    assert check.status == "warn"
    assert check.message.startswith("cannot check: your identity may not call "
                                    "eks:DescribeCluster")
