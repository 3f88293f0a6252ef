"""`trainship doctor`'s cluster checks: the EKS cluster, its authentication mode, the
cluster role's access entry, the namespace and a load balancer controller, asked through
the Kubernetes API with the caller's own identity (EksKube)."""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import Any, Protocol

from trainship.doctor_common import (
    KUBERNETES_EXTRA,
    Check,
    api_failure,
    client_error,
    error_code,
    error_text,
)

# The cluster role needs AmazonEKSEditPolicy on the namespace; the admin policies contain
# everything it grants ("Review access policy permissions", Amazon EKS User Guide).
EDIT_POLICIES = ("AmazonEKSEditPolicy", "AmazonEKSAdminPolicy", "AmazonEKSClusterAdminPolicy")
LB_CONTROLLER = ("kube-system", "aws-load-balancer-controller")
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


# --- EKS ---------------------------------------------------------------------------------

def check_cluster(eks: Any, name: str, region: str) -> tuple[dict[str, Any] | None, Check]:
    try:
        cluster: dict[str, Any] = eks.describe_cluster(name=name)["cluster"]
    except client_error() as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None, Check("cluster", "fail", f"no EKS cluster {name!r} in {region}",
                               fix="create it, or deploy the stack with "
                                   "-c trainship:eksClusterName=NAME")
        return None, api_failure("cluster", "eks:DescribeCluster", exc)
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
    except client_error() as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return Check("access-entry", "fail",
                         f"no access entry for the cluster role {role_arn}",
                         fix=f"redeploy the stack (it creates it), or: aws eks "
                             f"create-access-entry --cluster-name {cluster} --principal-arn "
                             f"{role_arn} && {associate}")
        if error_code(exc) == "InvalidRequestException" and "authentication mode" in str(exc):
            # "The cluster's authentication mode must be set to one of [API,
            # API_AND_CONFIG_MAP] to perform this operation."
            return Check("access-entry", "fail", f"access entries are off: {error_text(exc)}",
                         fix=f"aws eks update-cluster-config --name {cluster} "
                             "--access-config authenticationMode=API_AND_CONFIG_MAP")
        return api_failure("access-entry", "eks:DescribeAccessEntry", exc)
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
    except client_error() as exc:
        return api_failure("access-entry", "eks:ListAssociatedAccessPolicies", exc)
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
