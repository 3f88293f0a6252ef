"""``trainship doctor``: what a first deployment needs on the account, checked one by one.

It reads the stack's outputs (DescribeStacks) and checks, with the caller's own AWS
identity: the EKS cluster is ACTIVE and takes access entries (authentication mode API or
API_AND_CONFIG_MAP), the cluster role's access entry has AmazonEKSEditPolicy on the
namespace, the namespace exists, a load balancer controller serves LoadBalancer Services
(EKS Auto Mode or the AWS Load Balancer Controller), the MLflow tracking server is up and
runs MLflow 3, and the ECR repository exists. Each check is a plain function returning a
``Check`` (trainship.doctor_common; the cluster's checks are in trainship.doctor_eks);
``run`` strings them together; the CLI formats the report.

AWS clients come from an injected factory and the Kubernetes API from an injected
``KubeFactory`` so tests run them against moto, botocore Stubber responses shaped as AWS
documents them, and an HTTP-level fake Kubernetes API.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from packaging.version import InvalidVersion, Version

from trainship.doctor_common import (
    DEPLOY_DOC,
    Check,
    ClientFactory,
    HttpGet,
    api_failure,
    client_error,
    error_code,
)
from trainship.doctor_eks import (
    KubeFactory,
    KubeReader,
    check_access_entry,
    check_authentication_mode,
    check_cluster,
    check_load_balancer,
    check_namespace,
)

AWS_EXTRA = "trainship[aws]"

# TrackingServerStatus values in which the server answers (DescribeMlflowTrackingServer,
# Amazon SageMaker API Reference).
MLFLOW_READY = {"Created", "Updated", "Started", "MaintenanceComplete"}
MLFLOW_STOPPED = {"Stopped", "Stopping", "StopFailed"}
@dataclass
class StackInfo:
    name: str
    region: str
    status: str = ""
    outputs: dict[str, str] = field(default_factory=dict)

    def output(self, key: str) -> str:
        return self.outputs.get(key, "")


@dataclass
class Report:
    stack: str
    region: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "region": self.region, "ok": self.ok,
                "checks": [asdict(c) for c in self.checks]}


# --- the stack ---------------------------------------------------------------------------

def read_stack(cloudformation: Any, name: str, region: str) -> tuple[StackInfo, Check]:
    """The stack's outputs, and the check line about the stack itself."""
    info = StackInfo(name=name, region=region)
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except client_error() as exc:
        # "If the stack doesn't exist, a ValidationError is returned." (DescribeStacks,
        # AWS CloudFormation API Reference): not a dedicated not-found error code.
        if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
            return info, Check("stack", "fail", f"no stack {name!r} in {region}",
                               fix=f"deploy it (cdk deploy, see {DEPLOY_DOC}), or pass "
                                   "--stack NAME / --region REGION")
        return info, api_failure("stack", "cloudformation:DescribeStacks", exc)
    stack = stacks[0]
    info.status = stack.get("StackStatus", "")
    info.outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs") or []}
    status = info.status
    if status.endswith("_FAILED") or status == "ROLLBACK_COMPLETE":
        return info, Check("stack", "fail", f"{name} is {status}",
                           fix=f"read why: aws cloudformation describe-stack-events "
                               f"--stack-name {name} --region {region}")
    if status.endswith("_IN_PROGRESS"):
        return info, Check("stack", "warn", f"{name} is {status}: check again when it is done")
    if status == "UPDATE_ROLLBACK_COMPLETE":
        return info, Check("stack", "warn", f"{name} is {status}: its last update was rolled "
                                            "back; the outputs are the previous version's")
    return info, Check("stack", "ok", f"{name} is {status}")


# --- MLflow ------------------------------------------------------------------------------

def mlflow_arn_parts(arn: str) -> tuple[str, str] | None:
    """(region, tracking server name) of arn:PARTITION:sagemaker:REGION:ACCOUNT:
    mlflow-tracking-server/NAME; None for anything else."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and parts[2] == "sagemaker" and \
            parts[5].startswith("mlflow-tracking-server/"):
        return parts[3], parts[5].partition("/")[2]
    return None


def _mlflow_major(version: str) -> int | None:
    try:
        return Version(version.strip()).major
    except InvalidVersion:
        return None


def _version_check(version: str, where: str, fix: str) -> Check:
    major = _mlflow_major(version)
    if major is None:
        return Check("mlflow-version", "warn", f"cannot read the MLflow version {version!r} "
                                               f"of {where}")
    if major < 3:
        return Check("mlflow-version", "fail",
                     f"{where} runs MLflow {version}; trainship needs MLflow 3 (models are "
                     "logged as LoggedModels)", fix=fix)
    return Check("mlflow-version", "ok", f"{where} runs MLflow {version}")


def check_managed_mlflow(sagemaker: Any, arn: str) -> list[Check]:
    parts = mlflow_arn_parts(arn)
    if parts is None:
        return [Check("mlflow", "fail", f"{arn!r} is not a tracking server ARN",
                      fix="set trainship:mlflowTrackingUri to managed, a tracking server ARN "
                          "or an https:// URL")]
    region, name = parts
    try:
        # The request takes the server's name, not its ARN (DescribeMlflowTrackingServer:
        # TrackingServerName, pattern [a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}).
        server = sagemaker.describe_mlflow_tracking_server(TrackingServerName=name)
    except client_error() as exc:
        if error_code(exc) in ("ResourceNotFound", "ResourceNotFoundException"):
            return [Check("mlflow", "fail", f"no MLflow tracking server {name!r}",
                          fix="set trainship:mlflowTrackingUri to managed (the stack creates "
                              "one) or to an existing server, and redeploy")]
        return [api_failure("mlflow", "sagemaker:DescribeMlflowTrackingServer", exc)]
    status = server.get("TrackingServerStatus", "")
    version = server.get("MlflowVersion", "")
    if status in MLFLOW_READY:
        state = Check("mlflow", "ok", f"tracking server {name} is {status}")
    elif status in MLFLOW_STOPPED:
        state = Check("mlflow", "fail", f"tracking server {name} is {status}",
                      fix=f"aws sagemaker start-mlflow-tracking-server "
                          f"--tracking-server-name {name} --region {region}")
    elif status.endswith("Failed"):
        state = Check("mlflow", "fail", f"tracking server {name} is {status}",
                      fix=f"aws sagemaker describe-mlflow-tracking-server "
                          f"--tracking-server-name {name} --region {region}")
    else:
        state = Check("mlflow", "fail", f"tracking server {name} is {status}: not ready yet",
                      fix="wait a few minutes and run trainship doctor again")
    # UpdateMlflowTrackingServer cannot change MlflowVersion (only CreateMlflowTrackingServer
    # takes it): an MLflow 2 server is replaced, not upgraded.
    return [state, _version_check(
        version, f"tracking server {name}",
        fix="create a tracking server with MLflow 3 (or let the stack create one: "
            "trainship:mlflowTrackingUri=managed) and redeploy")]


def http_get(url: str, timeout: float = 10) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read(4096).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096).decode(errors="replace")


def check_mlflow_url(url: str, get: HttpGet = http_get) -> list[Check]:
    base = url.rstrip("/")
    try:
        status, body = get(f"{base}/health")
    except OSError as exc:  # URLError, timeouts, refused connections
        return [Check("mlflow", "warn",
                      f"{base} is not reachable from here ({exc}); fine if it is private to "
                      "the VPC: the builds and the Lambdas must reach it",
                      fix="check from inside the VPC; give the stack "
                          "trainship:vpcSubnetIds/vpcSecurityGroupIds for a private server")]
    if status in (401, 403):
        return [Check("mlflow", "warn", f"{base}/health answers {status}: the server wants "
                                        "authentication; cannot check its version")]
    if status != 200:
        return [Check("mlflow", "fail", f"{base}/health answers {status}: {body[:200]}",
                      fix="check the tracking server and its URL (trainship:mlflowTrackingUri)")]
    checks = [Check("mlflow", "ok", f"{base} is healthy")]
    try:
        status, body = get(f"{base}/version")
    except OSError as exc:
        return [*checks, Check("mlflow-version", "warn", f"cannot read {base}/version: {exc}")]
    if status != 200:
        return [*checks, Check("mlflow-version", "warn",
                               f"{base}/version answers {status}: cannot read the version")]
    return [*checks, _version_check(body, base, fix="upgrade the tracking server to MLflow 3")]


def check_mlflow(uri: str, sagemaker_for: Callable[[str], Any],
                 get: HttpGet = http_get) -> list[Check]:
    if uri.startswith("arn:"):
        parts = mlflow_arn_parts(uri)
        region = parts[0] if parts else ""
        return check_managed_mlflow(sagemaker_for(region) if parts else None, uri)
    if uri.startswith(("http://", "https://")):
        return check_mlflow_url(uri, get)
    return [Check("mlflow", "warn", f"cannot check the tracking URI {uri!r}: neither a "
                                    "tracking server ARN nor an http(s) URL")]


# --- ECR ---------------------------------------------------------------------------------

def repository_parts(uri: str) -> tuple[str, str, str] | None:
    """(registry id, region, repository name) of ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME."""
    host, _, name = uri.partition("/")
    labels = host.split(".")
    if name and len(labels) >= 6 and labels[1:3] == ["dkr", "ecr"]:
        return labels[0], labels[3], name
    return None


def check_repository(ecr_for: Callable[[str], Any], uri: str) -> Check:
    parts = repository_parts(uri)
    if parts is None:
        return Check("repository", "fail", f"{uri!r} is not an ECR repository URI",
                     fix="redeploy the stack")
    registry, region, name = parts
    try:
        ecr_for(region).describe_repositories(registryId=registry, repositoryNames=[name])
    except client_error() as exc:
        if error_code(exc) == "RepositoryNotFoundException":
            return Check("repository", "fail", f"no ECR repository {name} in {region}",
                         fix="redeploy the stack (it creates the repository): cdk deploy")
        return api_failure("repository", "ecr:DescribeRepositories", exc)
    return Check("repository", "ok", f"ECR repository {name} exists")


# --- the runner --------------------------------------------------------------------------

def _missing_output(name: str, output: str, flag: str = "") -> Check:
    extra = f", or pass {flag}" if flag else ""
    return Check(name, "warn", f"cannot check: the stack has no {output} output (deployed by "
                               f"an older trainship: redeploy it with cdk deploy{extra})")


def run(stack_name: str, region: str, clients: ClientFactory,
        kube_for: KubeFactory | None = None, *, cluster_name: str = "",
        namespace: str = "", get: HttpGet = http_get) -> Report:
    """Every check, in the order a first deployment needs them. ``cluster_name`` and
    ``namespace`` override the stack's outputs (and let the cluster checks run before the
    stack exists: ``cdk deploy`` itself needs the authentication mode)."""
    report = Report(stack=stack_name, region=region)
    info, stack_check = read_stack(clients("cloudformation", region), stack_name, region)
    report.checks.append(stack_check)
    have_stack = bool(info.status)

    cluster_name = cluster_name or info.output("EksClusterName")
    namespace = namespace or info.output("EksNamespace")
    if not cluster_name:
        if have_stack:
            report.checks.append(_missing_output("cluster", "EksClusterName", "--cluster NAME"))
    else:
        eks = clients("eks", region)
        cluster, cluster_check = check_cluster(eks, cluster_name, region)
        report.checks.append(cluster_check)
        if cluster is not None:
            auth = check_authentication_mode(cluster)
            report.checks.append(auth)
            role_arn = info.output("ClusterRoleArn")
            if not namespace:
                report.checks.append(
                    _missing_output("namespace", "EksNamespace", "--namespace NAME")
                    if have_stack else
                    Check("namespace", "warn", "not checked: pass --namespace NAME"))
            elif auth.status != "fail":
                if role_arn:
                    partition = str(cluster.get("arn", "arn:aws")).split(":")[1]
                    report.checks.append(check_access_entry(eks, cluster_name, role_arn,
                                                            namespace, partition))
                elif have_stack:
                    report.checks.append(_missing_output("access-entry", "ClusterRoleArn"))
            if cluster.get("status") == "ACTIVE":  # else there is no API server to ask yet
                kube = _kube(kube_for, cluster, region)
                if namespace:
                    report.checks.append(check_namespace(kube, namespace))
                report.checks.append(check_load_balancer(cluster, kube,
                                                         info.output("LoadBalancerScheme")))

    if have_stack:
        mlflow = info.output("MlflowTrackingUri")
        if mlflow:
            report.checks += check_mlflow(mlflow, lambda r: clients("sagemaker", r or region),
                                          get)
        else:
            report.checks.append(_missing_output("mlflow", "MlflowTrackingUri"))
        repository = info.output("RepositoryUri")
        if repository:
            report.checks.append(check_repository(lambda r: clients("ecr", r), repository))
        else:
            report.checks.append(_missing_output("repository", "RepositoryUri"))
    return report


def _kube(kube_for: KubeFactory | None, cluster: dict[str, Any],
          region: str) -> KubeReader | None:
    if kube_for is None:
        return None
    try:
        return kube_for(cluster, region)
    except ImportError:
        return None


# --- formatting --------------------------------------------------------------------------

LABELS = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


def format_text(report: Report) -> str:
    width = max((len(c.name) for c in report.checks), default=0)
    lines = [f"trainship doctor: stack {report.stack} in {report.region}"]
    for check in report.checks:
        fix = f" -> fix: {check.fix}" if check.fix and check.status != "ok" else ""
        lines.append(f"{LABELS[check.status]:4}  {check.name:{width}}  {check.message}{fix}")
    failed = sum(c.status == "fail" for c in report.checks)
    lines.append("all checks passed" if not failed else
                 f"{failed} check{'s' if failed > 1 else ''} failed")
    return "\n".join(lines) + "\n"
