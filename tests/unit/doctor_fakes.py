"""What the trainship doctor tests share: the stack's outputs, the stubbed EKS and
SageMaker clients (``Account``), a fake cluster, a stand-in MLflow server. The test
modules (test_doctor*.py) wrap ``set_aws_env`` and ``fake_cluster`` as fixtures."""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from kubernetes import client as k8s

from tests.helpers import LocalServer
from tests.unit.fake_kube import Call, FakeKube, FakeKubeServer, status_doc
from trainship import doctor, doctor_common, doctor_eks
from trainship.cluster.kube_api import KubeApi

REGION = "eu-west-1"
ACCOUNT = "123456789012"
CLUSTER = "prod"
NAMESPACE = "models"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/Trainship-ClusterRole-ABC"
MLFLOW_NAME = "trainship-mlflow"
MLFLOW_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/{MLFLOW_NAME}"
REPOSITORY = "trainship-models"
EDIT = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"
VIEW = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
NOW = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)


def set_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def outputs(**overrides: str | None) -> dict[str, str]:
    values: dict[str, str | None] = {
        "ApiUrl": f"https://abc123.execute-api.{REGION}.amazonaws.com/v1/",
        "StateMachineArn": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:Trainship",
        "RepositoryUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}",
        "StagingBucket": "trainship-staging",
        "MlflowTrackingUri": MLFLOW_ARN,
        "EksClusterName": CLUSTER,
        "EksNamespace": NAMESPACE,
        "ClusterRoleArn": ROLE_ARN,
        "LoadBalancerScheme": "internet-facing",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def create_stack(stack_outputs: dict[str, str], name: str = "Trainship") -> None:
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in stack_outputs.items()}}
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=name, TemplateBody=json.dumps(template))


def create_repository() -> None:
    boto3.client("ecr", region_name=REGION).create_repository(repositoryName=REPOSITORY)


def cluster(**overrides: Any) -> dict[str, Any]:
    """DescribeCluster's cluster as the EKS API Reference documents it (Cluster,
    AccessConfigResponse, ComputeConfigResponse, KubernetesNetworkConfigResponse)."""
    value: dict[str, Any] = {
        "name": CLUSTER, "arn": f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/{CLUSTER}",
        "createdAt": NOW, "version": "1.33", "status": "ACTIVE",
        "endpoint": "https://ABCDEF.gr7.eu-west-1.eks.amazonaws.com",
        "certificateAuthority": {"data": "Y2VydA=="},
        "accessConfig": {"authenticationMode": "API_AND_CONFIG_MAP",
                         "bootstrapClusterCreatorAdminPermissions": True},
        "kubernetesNetworkConfig": {"serviceIpv4Cidr": "10.100.0.0/16", "ipFamily": "ipv4",
                                    "elasticLoadBalancing": {"enabled": False}},
        "computeConfig": {"enabled": False},
    }
    value.update(overrides)
    return value


def access_entry() -> dict[str, Any]:
    return {"accessEntry": {"clusterName": CLUSTER, "principalArn": ROLE_ARN,
                            "kubernetesGroups": [], "type": "STANDARD", "createdAt": NOW,
                            "username": "arn:aws:sts::123456789012:assumed-role/"
                                        "Trainship-ClusterRole-ABC/{{SessionName}}"}}


def policies(*items: tuple[str, str, list[str]], token: str = "") -> dict[str, Any]:
    page: dict[str, Any] = {
        "clusterName": CLUSTER, "principalArn": ROLE_ARN,
        "associatedAccessPolicies": [
            {"policyArn": arn, "accessScope": {"type": kind, "namespaces": namespaces},
             "associatedAt": NOW, "modifiedAt": NOW} for arn, kind, namespaces in items]}
    if token:
        page["nextToken"] = token
    return page


def tracking_server(status: str = "Started", version: str = "3.0") -> dict[str, Any]:
    """DescribeMlflowTrackingServer's response (Amazon SageMaker API Reference)."""
    return {"TrackingServerArn": MLFLOW_ARN, "TrackingServerName": MLFLOW_NAME,
            "ArtifactStoreUri": "s3://trainship-mlflow-artifacts", "TrackingServerSize": "Small",
            "MlflowVersion": version, "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/mlflow",
            "TrackingServerStatus": status,
            "IsActive": "Active" if status in doctor.MLFLOW_READY else "Inactive",
            "TrackingServerUrl": "https://t-abc.eu-west-1.experiments.sagemaker.aws",
            "AutomaticModelRegistration": False, "CreationTime": NOW}


class Account:
    """Stubbed EKS and SageMaker clients (moto 5.2.5 has neither EKS access entries nor
    MLflow tracking servers, and its DescribeCluster has no accessConfig/computeConfig);
    CloudFormation and ECR come from moto."""

    def __init__(self) -> None:
        self.eks = boto3.client("eks", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.eks_stub = Stubber(self.eks)
        self.sagemaker_stub = Stubber(self.sagemaker)
        self.regions: list[tuple[str, str]] = []

    def clients(self, service: str, region: str) -> Any:
        self.regions.append((service, region))
        if service == "eks":
            return self.eks
        if service == "sagemaker":
            return self.sagemaker
        return boto3.client(service, region_name=region)

    def describe_cluster(self, **overrides: Any) -> None:
        self.eks_stub.add_response("describe_cluster", {"cluster": cluster(**overrides)},
                                   {"name": CLUSTER})

    def access(self, *pages: dict[str, Any]) -> None:
        self.eks_stub.add_response("describe_access_entry", access_entry(),
                                   {"clusterName": CLUSTER, "principalArn": ROLE_ARN})
        token = ""
        for page in pages:
            expected = {"clusterName": CLUSTER, "principalArn": ROLE_ARN}
            if token:
                expected["nextToken"] = token
            self.eks_stub.add_response("list_associated_access_policies", page, expected)
            token = page.get("nextToken", "")

    def mlflow(self, **kwargs: Any) -> None:
        # the request names the server, not its ARN (TrackingServerName's pattern has no ':')
        self.sagemaker_stub.add_response("describe_mlflow_tracking_server",
                                         tracking_server(**kwargs),
                                         {"TrackingServerName": MLFLOW_NAME})

    def green_cluster(self) -> None:
        self.describe_cluster()
        self.access(policies((EDIT, "namespace", [NAMESPACE])))

    def __enter__(self) -> Account:
        self.eks_stub.activate()
        self.sagemaker_stub.activate()
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:  # every stubbed call was made
            self.eks_stub.assert_no_pending_responses()
            self.sagemaker_stub.assert_no_pending_responses()
        self.eks_stub.deactivate()
        self.sagemaker_stub.deactivate()


class Unauthorized(FakeKube):
    """The caller's own identity has no access entry: every request is 401."""

    def handle(self, call: Call) -> tuple[int, Any]:
        return 401, status_doc(401, "Unauthorized")


@contextlib.contextmanager
def fake_cluster() -> Iterator[tuple[FakeKube, list[dict[str, Any]],
                                         doctor_eks.KubeFactory]]:
    """A fake cluster with the namespace and a running load balancer controller; the
    factory records the DescribeCluster result it was given."""
    fake = FakeKube(namespaces={NAMESPACE, "kube-system"})
    fake.objects[("Deployment", "kube-system", "aws-load-balancer-controller")] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "aws-load-balancer-controller", "namespace": "kube-system"}}
    fake.deployment_statuses = [{"replicas": 2, "availableReplicas": 2}]
    given: list[dict[str, Any]] = []
    with FakeKubeServer(fake) as server:
        def factory(described: dict[str, Any], region: str) -> doctor_eks.KubeReader:
            assert region == REGION
            given.append(described)
            configuration = k8s.Configuration()
            configuration.host = server.url
            configuration.api_key = {"authorization": "Bearer k8s-aws-v1.token"}
            return doctor_eks.KubeApiReader(KubeApi(k8s.ApiClient(configuration)))

        yield fake, given, factory


class Mlflow:
    """/health and /version as an MLflow tracking server answers them."""

    def __init__(self, version: str = "3.17.2", health: int = 200) -> None:
        state = self

        self.version, self.health = version, health

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                code, body = {"/health": (state.health, "OK"),
                              "/version": (200, state.version)}.get(self.path, (404, ""))
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.local = LocalServer(Handler).start()
        self.url = self.local.url

    def close(self) -> None:
        self.local.close()


def by_name(report: doctor.Report) -> dict[str, doctor_common.Check]:
    return {c.name: c for c in report.checks}


def run(account: Account, kube_for: doctor_eks.KubeFactory | None, **kwargs: Any) -> doctor.Report:
    return doctor.run("Trainship", REGION, account.clients, kube_for, **kwargs)


def by_name_list(checks: list[doctor_common.Check]) -> dict[str, doctor_common.Check]:
    return {c.name: c for c in checks}


def green_account_report(factory: Any) -> Any:
    """doctor's report for the stack, repository, cluster and MLflow all as they should be;
    the Kubernetes fake behind ``factory`` decides the cluster-side checks."""
    create_stack(outputs())
    create_repository()
    with Account() as account:
        account.green_cluster()
        account.mlflow()
        return run(account, factory)
