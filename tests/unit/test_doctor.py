"""trainship doctor: the all-green reports, the CLI's EKS token, the command line.

Against moto (CloudFormation, ECR, EKS DescribeCluster for a missing cluster), botocore
Stubber responses shaped as AWS documents them where moto 5.2.5 has no model (EKS access
entries, the accessConfig/computeConfig fields of DescribeCluster, SageMaker managed
MLflow), the HTTP-level fake Kubernetes API, and a small HTTP server standing in for an
MLflow tracking server's /health and /version (tests/unit/doctor_fakes.py)."""

from __future__ import annotations

import json
import sys
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.unit.doctor_fakes import (
    ACCOUNT,
    CLUSTER,
    EDIT,
    NAMESPACE,
    REGION,
    VIEW,
    Account,
    Mlflow,
    by_name,
    cluster,
    create_repository,
    create_stack,
    green_account_report,
    outputs,
    policies,
    run,
)
from tests.unit.fake_kube import FakeKube, FakeKubeServer
from trainship import cli, doctor, doctor_eks

pytestmark = pytest.mark.usefixtures("aws_env")


# --- all green ---------------------------------------------------------------------------


@mock_aws
def test_all_green_account(eks: Any) -> None:
    fake, given, factory = eks
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
def test_all_green_with_an_mlflow_url_and_eks_auto_mode(eks: Any) -> None:
    fake, _, factory = eks
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
def test_the_policy_may_be_on_a_later_page(eks: Any) -> None:
    _, _, factory = eks
    create_stack(outputs())
    create_repository()
    with Account() as account:
        account.describe_cluster()
        account.access(policies((VIEW, "cluster", []), token="page-2"),
                       policies((EDIT, "namespace", ["other", NAMESPACE])))
        account.mlflow()
        report = run(account, factory)
    assert by_name(report)["access-entry"].status == "ok"


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
