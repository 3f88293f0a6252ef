"""``trainship doctor``: what a first deployment needs on the account, checked one by one.

It reads the stack's outputs (DescribeStacks) and checks, with the caller's own AWS
identity: the EKS cluster is ACTIVE and takes access entries (authentication mode API or
API_AND_CONFIG_MAP), the cluster role's access entry has AmazonEKSEditPolicy on the
namespace, the namespace exists, a load balancer controller serves LoadBalancer Services
(EKS Auto Mode or the AWS Load Balancer Controller), the MLflow tracking server is up and
runs MLflow 3, and the ECR repository exists. Each check is a plain function returning a
``Check``; ``run`` strings them together; the CLI formats the report.

AWS clients come from an injected factory and the Kubernetes API from an injected
``KubeFactory`` so tests run them against moto, botocore Stubber responses shaped as AWS
documents them, and an HTTP-level fake Kubernetes API.
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from packaging.version import InvalidVersion, Version

Status = Literal["ok", "warn", "fail"]
ClientFactory = Callable[[str, str], Any]  # (service, region) -> boto3 client
HttpGet = Callable[[str], tuple[int, str]]  # url -> (status, body)

AWS_EXTRA = "trainship[aws]"
KUBERNETES_EXTRA = "trainship[lambda]"
DEPLOY_DOC = "docs/deploy-to-aws.md"

# The cluster role needs AmazonEKSEditPolicy on the namespace; the admin policies contain
# everything it grants ("Review access policy permissions", Amazon EKS User Guide).
EDIT_POLICIES = ("AmazonEKSEditPolicy", "AmazonEKSAdminPolicy", "AmazonEKSClusterAdminPolicy")
LB_CONTROLLER = ("kube-system", "aws-load-balancer-controller")
# TrackingServerStatus values in which the server answers (DescribeMlflowTrackingServer,
# Amazon SageMaker API Reference).
MLFLOW_READY = {"Created", "Updated", "Started", "MaintenanceComplete"}
MLFLOW_STOPPED = {"Stopped", "Stopping", "StopFailed"}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
          "UnauthorizedException", "UnrecognizedClientException", "ExpiredToken",
          "ExpiredTokenException", "InvalidClientTokenId"}


@dataclass(frozen=True)
class Check:
    """One line of the report: ``fix`` is a command or a doc pointer when not ok."""

    name: str
    status: Status
    message: str
    fix: str = ""


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


class KubeUnavailable(Exception):
    """The Kubernetes API did not answer the question: ``status`` 401/403 (this identity
    may not look), None (not reachable, or no Kubernetes client installed)."""

    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class KubeReader(Protocol):
    def get(self, path: str) -> Any:
        """The object at ``path``, None on 404; raises KubeUnavailable otherwise."""


KubeFactory = Callable[[dict[str, Any], str], KubeReader]  # (DescribeCluster's cluster, region)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Code", ""))


def _error_text(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', str(exc))}"


def _api_failure(name: str, operation: str, exc: Exception) -> Check:
    if _error_code(exc) in DENIED:
        return Check(name, "warn", f"cannot check: your identity may not call {operation} "
                                   f"({_error_text(exc)})")
    return Check(name, "fail", f"{operation} failed: {_error_text(exc)}")


def _client_error() -> type[Exception]:
    from botocore.exceptions import ClientError

    error: type[Exception] = ClientError
    return error


# --- the stack ---------------------------------------------------------------------------

def read_stack(cloudformation: Any, name: str, region: str) -> tuple[StackInfo, Check]:
    """The stack's outputs, and the check line about the stack itself."""
    info = StackInfo(name=name, region=region)
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except _client_error() as exc:
        # "If the stack doesn't exist, a ValidationError is returned." (DescribeStacks,
        # AWS CloudFormation API Reference): not a dedicated not-found error code.
        if _error_code(exc) == "ValidationError" and "does not exist" in str(exc):
            return info, Check("stack", "fail", f"no stack {name!r} in {region}",
                               fix=f"deploy it (cdk deploy, see {DEPLOY_DOC}), or pass "
                                   "--stack NAME / --region REGION")
        return info, _api_failure("stack", "cloudformation:DescribeStacks", exc)
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


# --- EKS ---------------------------------------------------------------------------------

def check_cluster(eks: Any, name: str, region: str) -> tuple[dict[str, Any] | None, Check]:
    try:
        cluster: dict[str, Any] = eks.describe_cluster(name=name)["cluster"]
    except _client_error() as exc:
        if _error_code(exc) == "ResourceNotFoundException":
            return None, Check("cluster", "fail", f"no EKS cluster {name!r} in {region}",
                               fix="create it, or deploy the stack with "
                                   "-c trainship:eksClusterName=NAME")
        return None, _api_failure("cluster", "eks:DescribeCluster", exc)
    status = cluster.get("status", "")
    if status != "ACTIVE":
        return cluster, Check("cluster", "fail", f"cluster {name} is {status}, not ACTIVE",
                              fix=f"wait, or see: aws eks describe-cluster --name {name}")
    return cluster, Check("cluster", "ok", f"cluster {name} is ACTIVE "
                                           f"(Kubernetes {cluster.get('version', '?')})")


def check_authentication_mode(cluster: dict[str, Any]) -> Check:
    """Access entries work only with API or API_AND_CONFIG_MAP; clusters created through the
    EKS API, SDKs or CloudFormation default to CONFIG_MAP (AccessConfig,
    AWS::EKS::Cluster, CloudFormation User Guide), so this fails on many older clusters."""
    name = cluster.get("name", "")
    fix = (f"aws eks update-cluster-config --name {name} "
           "--access-config authenticationMode=API_AND_CONFIG_MAP")
    mode = (cluster.get("accessConfig") or {}).get("authenticationMode")
    if mode in ("API", "API_AND_CONFIG_MAP"):
        return Check("authentication-mode", "ok", f"authentication mode {mode}")
    if mode is None:
        return Check("authentication-mode", "warn",
                     "cannot check: DescribeCluster reports no accessConfig.authenticationMode",
                     fix=fix)
    return Check("authentication-mode", "fail",
                 f"authentication mode {mode}: the stack's access entry needs API or "
                 "API_AND_CONFIG_MAP (the change is one-way)", fix=fix)


def _scope_covers(scope: dict[str, Any], namespace: str) -> bool:
    return scope.get("type") == "cluster" or (
        scope.get("type") == "namespace" and namespace in (scope.get("namespaces") or []))


def check_access_entry(eks: Any, cluster: str, role_arn: str, namespace: str,
                       partition: str = "aws") -> Check:
    policy_arn = f"arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"
    associate = (f"aws eks associate-access-policy --cluster-name {cluster} "
                 f"--principal-arn {role_arn} --policy-arn {policy_arn} "
                 f"--access-scope type=namespace,namespaces={namespace}")
    try:
        eks.describe_access_entry(clusterName=cluster, principalArn=role_arn)
    except _client_error() as exc:
        if _error_code(exc) == "ResourceNotFoundException":
            return Check("access-entry", "fail",
                         f"no access entry for the cluster role {role_arn}",
                         fix=f"redeploy the stack (it creates it), or: aws eks "
                             f"create-access-entry --cluster-name {cluster} --principal-arn "
                             f"{role_arn} && {associate}")
        if _error_code(exc) == "InvalidRequestException" and "authentication mode" in str(exc):
            # "The cluster's authentication mode must be set to one of [API,
            # API_AND_CONFIG_MAP] to perform this operation."
            return Check("access-entry", "fail", f"access entries are off: {_error_text(exc)}",
                         fix=f"aws eks update-cluster-config --name {cluster} "
                             "--access-config authenticationMode=API_AND_CONFIG_MAP")
        return _api_failure("access-entry", "eks:DescribeAccessEntry", exc)
    policies: list[dict[str, Any]] = []
    token = ""
    try:
        while True:  # paginated by nextToken (ListAssociatedAccessPolicies)
            page = eks.list_associated_access_policies(
                clusterName=cluster, principalArn=role_arn, **({"nextToken": token}
                                                               if token else {}))
            policies += page.get("associatedAccessPolicies") or []
            token = page.get("nextToken") or ""
            if not token:
                break
    except _client_error() as exc:
        return _api_failure("access-entry", "eks:ListAssociatedAccessPolicies", exc)
    for policy in policies:
        name = str(policy.get("policyArn", "")).rpartition("/")[2]
        if name in EDIT_POLICIES and _scope_covers(policy.get("accessScope") or {}, namespace):
            return Check("access-entry", "ok",
                         f"the cluster role has {name} on namespace {namespace}")
    found = ", ".join(
        f"{str(p.get('policyArn', '')).rpartition('/')[2]} "
        f"({(p.get('accessScope') or {}).get('type')}: "
        f"{','.join((p.get('accessScope') or {}).get('namespaces') or []) or '-'})"
        for p in policies) or "none"
    return Check("access-entry", "fail",
                 f"the cluster role's access entry has no AmazonEKSEditPolicy on namespace "
                 f"{namespace} (associated: {found})", fix=associate)


def check_namespace(kube: KubeReader | None, namespace: str) -> Check:
    if kube is None:
        return Check("namespace", "warn", "cannot check: the Kubernetes checks need the "
                                          f"kubernetes client (pip install '{KUBERNETES_EXTRA}')")
    try:
        found = kube.get(f"/api/v1/namespaces/{namespace}")
    except KubeUnavailable as exc:
        return Check("namespace", "warn", _kube_cannot(exc, f"namespace {namespace}"))
    if found is None:
        return Check("namespace", "fail", f"namespace {namespace} does not exist (the cluster "
                                          "role is scoped to it and cannot create it)",
                     fix=f"kubectl create namespace {namespace}")
    return Check("namespace", "ok", f"namespace {namespace} exists")


def _kube_cannot(exc: KubeUnavailable, what: str) -> str:
    if exc.status in (401, 403):
        return (f"cannot check {what}: your identity has no cluster access (HTTP {exc.status}); "
                "give it an access entry, or check with kubectl as a cluster admin")
    return f"cannot check {what}: {exc.reason}"


def check_load_balancer(cluster: dict[str, Any], kube: KubeReader | None,
                        scheme: str = "") -> Check:
    """EKS Auto Mode provisions an NLB for every LoadBalancer Service ("Use Service
    Annotations to configure Network Load Balancers", Amazon EKS User Guide); otherwise the
    AWS Load Balancer Controller must run, or the Service gets a Classic Load Balancer from
    the legacy in-tree cloud provider, which ignores aws-load-balancer-scheme."""
    compute = cluster.get("computeConfig") or {}
    elb = ((cluster.get("kubernetesNetworkConfig") or {}).get("elasticLoadBalancing") or {})
    wants = f" ({scheme})" if scheme else ""
    if compute.get("enabled") and elb.get("enabled"):
        return Check("load-balancer", "ok",
                     f"EKS Auto Mode provisions the Services' load balancers{wants}")
    legacy = ("without EKS Auto Mode load balancing or the AWS Load Balancer Controller, a "
              "LoadBalancer Service gets a legacy Classic Load Balancer from the in-tree "
              "cloud provider, which ignores the aws-load-balancer-scheme annotation")
    fix = ("install the AWS Load Balancer Controller (Amazon EKS User Guide: \"Route "
           "internet traffic with AWS Load Balancer Controller\"), or enable EKS Auto Mode")
    if kube is None:
        return Check("load-balancer", "warn",
                     "cannot check for the AWS Load Balancer Controller: the Kubernetes checks "
                     f"need the kubernetes client (pip install '{KUBERNETES_EXTRA}'); "
                     + legacy, fix=fix)
    ns, name = LB_CONTROLLER
    try:
        deployment = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    except KubeUnavailable as exc:
        return Check("load-balancer", "warn",
                     _kube_cannot(exc, f"for the {name} Deployment in {ns}") + "; " + legacy,
                     fix=fix)
    if deployment is None:
        return Check("load-balancer", "warn", legacy, fix=fix)
    available = int((deployment.get("status") or {}).get("availableReplicas") or 0)
    if available < 1:
        # its webhook takes every new LoadBalancer Service: with no replica, applies fail
        return Check("load-balancer", "fail",
                     f"{name} is installed in {ns} but has no available replica",
                     fix=f"kubectl -n {ns} describe deployment {name}")
    return Check("load-balancer", "ok",
                 f"{name} runs in {ns} ({available} available){wants}")


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
    except _client_error() as exc:
        if _error_code(exc) in ("ResourceNotFound", "ResourceNotFoundException"):
            return [Check("mlflow", "fail", f"no MLflow tracking server {name!r}",
                          fix="set trainship:mlflowTrackingUri to managed (the stack creates "
                              "one) or to an existing server, and redeploy")]
        return [_api_failure("mlflow", "sagemaker:DescribeMlflowTrackingServer", exc)]
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
    except _client_error() as exc:
        if _error_code(exc) == "RepositoryNotFoundException":
            return Check("repository", "fail", f"no ECR repository {name} in {region}",
                         fix="redeploy the stack (it creates the repository): cdk deploy")
        return _api_failure("repository", "ecr:DescribeRepositories", exc)
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


# --- the Kubernetes API through the EKS token ---------------------------------------------

class KubeApiReader:
    """trainship.cluster.kube_api.KubeApi's GET, with its failures as KubeUnavailable."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def get(self, path: str) -> Any:
        from kubernetes.client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return self.api.get(path)
        except ApiException as exc:
            raise KubeUnavailable(exc.status, f"HTTP {exc.status} {exc.reason}") from exc
        except (HTTPError, OSError) as exc:
            raise KubeUnavailable(None, f"the cluster endpoint is not reachable from here "
                                        f"({type(exc).__name__}); a private endpoint needs a "
                                        "machine in the VPC") from exc


class EksKube:
    """The KubeFactory of the CLI: endpoint and CA from DescribeCluster, a bearer token made
    by the very code the Lambdas use (trainship.cluster.kube_api.eks_token) for the
    caller's own identity. Temporary CA files are removed by ``close``."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.files: list[str] = []

    def __call__(self, cluster: dict[str, Any], region: str) -> KubeReader:
        from kubernetes import client as k8s  # ImportError: reported by the checks

        from trainship.cluster.kube_api import KubeApi, eks_token

        with tempfile.NamedTemporaryFile(prefix="eks-ca-", suffix=".crt",
                                         delete=False) as ca:
            ca.write(base64.b64decode((cluster.get("certificateAuthority") or {})
                                      .get("data", "")))
        self.files.append(ca.name)
        configuration = k8s.Configuration()
        configuration.host = cluster.get("endpoint", "")
        configuration.ssl_ca_cert = ca.name
        configuration.api_key = {
            "authorization": f"Bearer {eks_token(cluster['name'], region, self.session)}"}
        return KubeApiReader(KubeApi(k8s.ApiClient(configuration)))

    def close(self) -> None:
        for name in self.files:
            with contextlib.suppress(OSError):
                os.unlink(name)
        self.files.clear()


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
