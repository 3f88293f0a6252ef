"""The Kubernetes API as the kubernetes driver and `trainship doctor` reach it: JSON over
the kubernetes client's ApiClient, authenticated to EKS with a presigned STS token (as
aws-iam-authenticator makes it), or by the kubeconfig, or in-cluster."""

from __future__ import annotations

import base64
import json
import tempfile
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from trainship.cluster.manifests import FIELD_MANAGER
from trainship.config import ClusterSettings

_PATHS = {
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Service": "/api/v1/namespaces/{ns}/services",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    "HorizontalPodAutoscaler": "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
}


def object_path(kind: str, namespace: str, name: str = "") -> str:
    """The API path of a kind's objects in a namespace (of one object, given its name)."""
    base = _PATHS[kind].format(ns=namespace)
    return f"{base}/{name}" if name else base


class KubeApi:
    """JSON over the kubernetes client's ApiClient (its auth, TLS and proxies)."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client

    def request(self, method: str, path: str, *, body: Any = None,
                query: list[tuple[str, str]] | None = None,
                content_type: str = "application/json", timeout: float = 30) -> Any:
        response = self.api_client.call_api(
            path, method, query_params=query or [], body=body,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            auth_settings=["BearerToken"], _preload_content=False,
            _return_http_data_only=True, _request_timeout=timeout)
        data = response.data.decode()
        try:
            return json.loads(data) if data else None
        except ValueError:
            return data

    def get(self, path: str, **query: str) -> Any:
        """GET, or None on 404."""
        try:
            return self.request("GET", path, query=list(query.items()))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def apply(self, obj: dict[str, Any]) -> Any:
        meta = obj["metadata"]
        return self.request(
            "PATCH", object_path(obj["kind"], meta["namespace"], meta["name"]), body=obj,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml")

    def post(self, path: str, payload: Any, *, timeout: float,
             headers: dict[str, str] | None = None) -> tuple[int, str]:
        """POST JSON with ``headers`` too; (status, body) whatever the status. Connection
        failures raise urllib3's errors."""
        try:
            response = self.api_client.call_api(
                path, "POST", body=payload,
                header_params={**(headers or {}), "Content-Type": "application/json",
                               "Accept": "*/*"},
                auth_settings=["BearerToken"], _preload_content=False,
                _return_http_data_only=True, _request_timeout=timeout)
        except ApiException as exc:
            body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) \
                else str(exc.body or "")
            return int(exc.status or 0), body
        return int(response.status), response.data.decode(errors="replace")

    def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            self.request("DELETE", object_path(kind, namespace, name))
        except ApiException as exc:
            if exc.status != 404:
                raise


def eks_token(cluster_name: str, region: str, session: Any = None) -> str:
    """The bearer token EKS accepts: a presigned sts:GetCallerIdentity URL that names the
    cluster in the x-k8s-aws-id header (valid 15 minutes)."""
    import boto3
    from botocore.signers import RequestSigner

    session = session or boto3.session.Session()
    sts = session.client("sts", region_name=region)
    signer = RequestSigner(sts.meta.service_model.service_id, region, "sts", "v4",
                           session.get_credentials(), session.events)
    url = signer.generate_presigned_url(
        {"method": "GET",
         # the client's own regional endpoint: sts.<region>.amazonaws.com, or
         # .amazonaws.com.cn in the China partition, where a hard-coded host fails
         "url": f"{sts.meta.endpoint_url.rstrip('/')}/?Action=GetCallerIdentity"
                "&Version=2011-06-15",
         "body": {}, "headers": {"x-k8s-aws-id": cluster_name}, "context": {}},
        region_name=region, expires_in=60, operation_name="")
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def eks_configuration(cluster_name: str, region: str) -> k8s.Configuration:
    """The client configuration of an EKS cluster: endpoint and CA from
    eks:DescribeCluster, and a bearer token (eks_token)."""
    import boto3

    cluster = boto3.client("eks", region_name=region).describe_cluster(
        name=cluster_name)["cluster"]
    ca = tempfile.NamedTemporaryFile(prefix="eks-ca-", suffix=".crt", delete=False)
    ca.write(base64.b64decode(cluster["certificateAuthority"]["data"]))
    ca.close()
    configuration = k8s.Configuration()
    configuration.host = cluster["endpoint"]
    configuration.ssl_ca_cert = ca.name
    # the full header value: the client's prefix lookup differs between its versions
    configuration.api_key = {"authorization": f"Bearer {eks_token(cluster_name, region)}"}
    return configuration


def api_from_settings(settings: ClusterSettings) -> KubeApi:
    """The EKS cluster's API (``TRAINSHIP_EKS_CLUSTER``, in ``AWS_REGION``), else the
    kubeconfig's (``TRAINSHIP_KUBE_CONTEXT``), else the in-cluster service account's."""
    if settings.eks_cluster:
        return KubeApi(k8s.ApiClient(eks_configuration(settings.eks_cluster,
                                                       settings.region)))
    configuration = k8s.Configuration()
    try:
        k8s_config.load_kube_config(context=settings.kube_context or None,
                                    client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_incluster_config(client_configuration=configuration)
    return KubeApi(k8s.ApiClient(configuration))
