"""trainship doctor against moto (CloudFormation, ECR, EKS DescribeCluster for a missing
cluster), botocore Stubber responses shaped as AWS documents them where moto 5.2.5 has no
model (EKS access entries, the accessConfig/computeConfig fields of DescribeCluster,
SageMaker managed MLflow), the HTTP-level fake Kubernetes API, and a small HTTP server
standing in for an MLflow tracking server's /health and /version."""

from __future__ import annotations

import datetime
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from kubernetes import client as k8s
from moto import mock_aws

from tests.unit.fake_kube import Call, FakeKube, FakeKubeServer, status_doc
from trainship import cli, doctor, doctor_common, doctor_eks
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


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
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


@pytest.fixture()
def kube() -> Iterator[tuple[FakeKube, list[dict[str, Any]], doctor_eks.KubeFactory]]:
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # shutdown() waits for the loop's next poll (0.5 s by default)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def by_name(report: doctor.Report) -> dict[str, doctor_common.Check]:
    return {c.name: c for c in report.checks}


def run(account: Account, kube_for: doctor_eks.KubeFactory | None, **kwargs: Any) -> doctor.Report:
    return doctor.run("Trainship", REGION, account.clients, kube_for, **kwargs)


# --- all green ---------------------------------------------------------------------------


def green_account_report(factory: Any) -> Any:
    """doctor's report for the stack, repository, cluster and MLflow all as they should be;
    the Kubernetes fake behind ``factory`` decides the cluster-side checks."""
    create_stack(outputs())
    create_repository()
    with Account() as account:
        account.green_cluster()
        account.mlflow()
        return run(account, factory)

@mock_aws
def test_all_green_account(kube: Any) -> None:
    fake, given, factory = kube
    report = green_account_report(factory)
    checks = by_name(report)
    assert [c.name for c in report.checks] == [
        "stack", "cluster", "authentication-mode", "access-entry", "namespace",
        "load-balancer", "mlflow", "mlflow-version", "repository"]
    assert all(c.status == "ok" for c in report.checks), report.checks
    assert report.ok
    assert "AmazonEKSEditPolicy on namespace models" in checks["access-entry"].message
    assert "aws-load-balancer-controller runs in kube-system (2 available)" in \
        checks["load-balancer"].message
    assert given[0]["endpoint"] == cluster()["endpoint"]  # the token goes where EKS said
    assert {c.path for c in fake.calls} == {
        f"/api/v1/namespaces/{NAMESPACE}",
        "/apis/apps/v1/namespaces/kube-system/deployments/aws-load-balancer-controller"}
    assert all(c.authorization == "Bearer k8s-aws-v1.token" for c in fake.calls)
    text = doctor.format_text(report)
    assert text.splitlines()[0] == f"trainship doctor: stack Trainship in {REGION}"
    assert len(text.splitlines()) == 1 + len(report.checks) + 1
    assert text.endswith("all checks passed\n")


@mock_aws
def test_all_green_with_an_mlflow_url_and_eks_auto_mode(kube: Any) -> None:
    fake, _, factory = kube
    server = Mlflow("3.17.2")
    try:
        create_stack(outputs(MlflowTrackingUri=server.url))
        create_repository()
        with Account() as account:
            account.describe_cluster(
                computeConfig={"enabled": True, "nodePools": ["general-purpose", "system"],
                               "nodeRoleArn": f"arn:aws:iam::{ACCOUNT}:role/node"},
                kubernetesNetworkConfig={"serviceIpv4Cidr": "10.100.0.0/16",
                                         "ipFamily": "ipv4",
                                         "elasticLoadBalancing": {"enabled": True}},
                accessConfig={"authenticationMode": "API"})
            account.access(policies((EDIT, "cluster", [])))
            report = run(account, factory)
    finally:
        server.close()
    checks = by_name(report)
    assert report.ok and all(c.status == "ok" for c in report.checks), report.checks
    assert "EKS Auto Mode" in checks["load-balancer"].message
    assert checks["mlflow-version"].message.endswith("runs MLflow 3.17.2")
    # Auto Mode answers the load balancer question: no look into kube-system
    assert [c.path for c in fake.calls] == [f"/api/v1/namespaces/{NAMESPACE}"]


@mock_aws
def test_the_policy_may_be_on_a_later_page(kube: Any) -> None:
    _, _, factory = kube
    create_stack(outputs())
    create_repository()
    with Account() as account:
        account.describe_cluster()
        account.access(policies((VIEW, "cluster", []), token="page-2"),
                       policies((EDIT, "namespace", ["other", NAMESPACE])))
        account.mlflow()
        report = run(account, factory)
    assert by_name(report)["access-entry"].status == "ok"


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
def test_a_cluster_still_creating(kube: Any) -> None:
    fake, given, factory = kube
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
def test_missing_namespace(kube: Any) -> None:
    fake, _, factory = kube
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
def test_a_namespace_scoped_caller_gets_403(kube: Any) -> None:
    fake, _, factory = kube
    fake.namespaces_forbidden = True
    report = green_account_report(factory)
    assert "your identity has no cluster access (HTTP 403)" in \
        by_name(report)["namespace"].message


@mock_aws
def test_no_load_balancer_controller(kube: Any) -> None:
    fake, _, factory = kube
    fake.objects.clear()
    report = green_account_report(factory)
    check = by_name(report)["load-balancer"]
    assert check.status == "warn"
    assert "legacy Classic Load Balancer" in check.message
    assert "AWS Load Balancer Controller" in check.fix


@mock_aws
def test_load_balancer_controller_without_replicas(kube: Any) -> None:
    fake, _, factory = kube
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


def by_name_list(checks: list[doctor_common.Check]) -> dict[str, doctor_common.Check]:
    return {c.name: c for c in checks}


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


def test_eks_kube_signs_with_the_callers_identity_and_cleans_up() -> None:
    """The CLI's KubeFactory: DescribeCluster's endpoint and CA, and the EKS token the
    Lambdas use (a presigned sts:GetCallerIdentity naming the cluster)."""
    import base64
    import os
    from urllib.parse import parse_qs, urlparse

    fake = FakeKube(namespaces={NAMESPACE})
    session = boto3.session.Session(region_name=REGION)
    factory = doctor_eks.EksKube(session)
    with FakeKubeServer(fake) as server:
        reader = factory(cluster(endpoint=server.url), REGION)
        assert doctor_eks.check_namespace(reader, NAMESPACE).status == "ok"
    (ca,) = factory.files
    with open(ca, "rb") as handle:
        assert handle.read() == b"cert"
    factory.close()
    assert not os.path.exists(ca)
    token = fake.calls[0].authorization.removeprefix("Bearer k8s-aws-v1.")
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    query = parse_qs(urlparse(url).query)
    assert query["Action"] == ["GetCallerIdentity"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0]
    assert query["X-Amz-Credential"][0].startswith("testing/")


# --- the command line --------------------------------------------------------------------

def test_without_boto3_doctor_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 -> ImportError
    assert cli.main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert err == "trainship doctor needs boto3: pip install 'trainship[aws]'\n"


def test_without_credentials_doctor_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for key in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(key, raising=False)
    assert cli.main(["doctor"]) == 2
    assert capsys.readouterr().err.startswith("trainship doctor: no AWS credentials found")


@mock_aws
def test_cli_text_and_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--stack", "Missing", "--region", REGION]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"trainship doctor: stack Missing in {REGION}"
    assert out[1].startswith(f"FAIL  stack  no stack 'Missing' in {REGION} -> fix: ")
    assert out[-1] == "1 check failed"


@mock_aws
def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--output", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["region"] == REGION
    assert report["checks"][0]["name"] == "stack" and report["checks"][0]["status"] == "fail"


@mock_aws
def test_cluster_checks_without_a_stack() -> None:
    with Account() as account:
        account.describe_cluster(accessConfig={"authenticationMode": "API"},
                                 computeConfig={"enabled": True},
                                 kubernetesNetworkConfig={"elasticLoadBalancing":
                                                          {"enabled": True}})
        report = run(account, None, cluster_name=CLUSTER)
    checks = by_name(report)
    assert [c.name for c in report.checks] == ["stack", "cluster", "authentication-mode",
                                               "namespace", "load-balancer"]
    assert checks["namespace"].message == "not checked: pass --namespace NAME"
    assert checks["authentication-mode"].status == "ok"
    assert checks["load-balancer"].status == "ok"


@mock_aws
def test_cli_cluster_check_before_the_stack_exists(capsys: pytest.CaptureFixture[str]) -> None:
    """--cluster runs the cluster checks without a stack (cdk deploy needs them first);
    moto has no such cluster."""
    assert cli.main(["doctor", "--cluster", "nothere", "--namespace", "models"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  cluster  no EKS cluster 'nothere' in {REGION}" in out
