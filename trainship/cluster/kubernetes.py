"""The ``kubernetes`` cluster driver: any kubeconfig, or EKS (the code the Lambdas run).

- apply: the namespace is created when missing; every object of ``manifests.render`` is
  sent by server-side apply (PATCH ``application/apply-patch+yaml``, field manager
  ``trainship``, force). The Deployment carries the resourceVersion read just before, so
  two deployments of one model racing each other get a 409 instead of silently
  overwriting; a lower version never replaces a higher one that is live.
- status: ``kubectl rollout status`` logic plus the pods' reasons (CrashLoopBackOff,
  ImagePullBackOff, ErrImagePull, OOMKilled, Unschedulable, ...) with the last log lines,
  and the Service's load-balancer address.
- invoke (the smoke test): POST through the API server's pod proxy
  (``/api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/...``) to a ready pod of the new
  version: neither the load balancer's DNS (minutes to appear) nor cluster DNS (not
  resolvable from Lambda) is needed. AmazonEKSEditPolicy allows ``create`` on
  ``pods/proxy`` ("Review access policy permissions", Amazon EKS User Guide).
- discard (after a RolloutFailed): the previous version's objects are applied again, so
  it keeps serving behind the same Service; a first deployment is deleted entirely.

Authentication: ``TRAINSHIP_EKS_CLUSTER`` (endpoint and CA from eks:DescribeCluster, a
presigned STS token as aws-iam-authenticator makes it), else the kubeconfig
(``KUBECONFIG``/``TRAINSHIP_KUBE_CONTEXT``), else the in-cluster service account.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from trainship.cluster import Answer, Applied, RolloutStatus, Unreachable
from trainship.cluster.manifests import (
    CONTAINER_NAME,
    CONTAINER_PORT,
    FIELD_MANAGER,
    VERSION_ANNOTATION,
    WorkloadSpec,
    render,
    source_ranges,
)
from trainship.errors import RolloutFailed
from trainship.names import serving_name

FATAL_WAITING = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                 "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
LOG_LINES = 30
APPLY_HELP = ("403: the identity DeployModel runs as may not write there (on EKS, the access "
              "entry is scoped to trainship:eksNamespace). 404 for the namespace: create it "
              "(`kubectl create namespace NAME`): a namespace-scoped identity cannot. 422: "
              "the cluster rejected an object; details has its message.")
APPLY_ATTEMPTS = 3
PROXY_HELP = ("The smoke test reaches the new version's pod through the API server's pod "
              "proxy: the identity SmokeTestModel runs as needs `create` on `pods/proxy` in "
              "the namespace (AmazonEKSEditPolicy has it; on EKS, associate it with the "
              "cluster role's access entry, scoped to trainship:eksNamespace).")

_PATHS = {
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Service": "/api/v1/namespaces/{ns}/services",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    "HorizontalPodAutoscaler": "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
}


def object_path(kind: str, namespace: str, name: str = "") -> str:
    base = _PATHS[kind].format(ns=namespace)
    return f"{base}/{name}" if name else base


class KubeApi:
    """JSON over the kubernetes client's ApiClient (its auth, TLS and proxies)."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client

    def request(self, method: str, path: str, *, body: Any = None,
                query: list[tuple[str, str]] | None = None,
                content_type: str = "application/json") -> Any:
        response = self.api_client.call_api(
            path, method, query_params=query or [], body=body,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            auth_settings=["BearerToken"], _preload_content=False,
            _return_http_data_only=True, _request_timeout=30)
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

    def post(self, path: str, payload: Any, *, timeout: float) -> tuple[int, str]:
        """POST JSON; (status, body) whatever the status. Connection failures raise
        urllib3's errors."""
        try:
            response = self.api_client.call_api(
                path, "POST", body=payload,
                header_params={"Content-Type": "application/json", "Accept": "*/*"},
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


def _version(deployment: dict[str, Any] | None) -> str | None:
    if not deployment:
        return None
    return (deployment.get("metadata", {}).get("annotations") or {}).get(VERSION_ANNOTATION)


def _name(handle: dict[str, Any]) -> str:
    """The Kubernetes name of a handle's objects: its serving name (trainship.names)."""
    return serving_name(str(handle["model_name"]))


def _higher(a: str | None, b: str) -> bool:
    return a is not None and a.isdigit() and b.isdigit() and int(a) > int(b)


def spec_of(deployment: dict[str, Any], base: WorkloadSpec) -> WorkloadSpec:
    """The WorkloadSpec a live Deployment was rendered from (for rolling back to it)."""
    meta = deployment["metadata"]
    annotations = meta.get("annotations") or {}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    requests = (container.get("resources") or {}).get("requests") or {}
    return WorkloadSpec(
        model_name=base.model_name, version=annotations.get(VERSION_ANNOTATION, ""),
        image_uri=container["image"],
        deployment_id=annotations.get("trainship.io/deployment-id", ""),
        replicas=int(deployment["spec"].get("replicas") or base.replicas),
        cpu=requests.get("cpu", base.cpu), memory=requests.get("memory", base.memory),
        namespace=meta.get("namespace", base.namespace), service_type=base.service_type,
        max_replicas=base.max_replicas, target_cpu_percent=base.target_cpu_percent,
        progress_deadline_seconds=int(deployment["spec"].get(
            "progressDeadlineSeconds") or base.progress_deadline_seconds),
        workers=base.workers, lb_scheme=base.lb_scheme,
        lb_source_ranges=list(base.lb_source_ranges), arch=base.arch)


def service_url(service: dict[str, Any] | None) -> str:
    """The inference URL the Service gives: the load balancer's address, or cluster DNS."""
    if not service:
        return ""
    spec, meta = service.get("spec") or {}, service.get("metadata") or {}
    port = next((p.get("port") for p in spec.get("ports") or []), 80)
    suffix = "" if port == 80 else f":{port}"
    if spec.get("type") == "LoadBalancer":
        for ingress in (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []:
            address = ingress.get("hostname") or ingress.get("ip")
            if address:
                return f"http://{address}{suffix}"
        return ""
    return f"http://{meta.get('name')}.{meta.get('namespace')}.svc.cluster.local{suffix}"


def pod_ready(pod: dict[str, Any]) -> bool:
    """Running, Ready and not on its way out."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def api_status(body: str) -> dict[str, Any] | None:
    """The API server's own Status document (as opposed to the model's answer relayed)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("kind") == "Status" and doc.get("apiVersion") == "v1":
        return doc
    return None


def pod_problems(pods: list[dict[str, Any]]) -> tuple[list[str], list[str], bool]:
    """(problems, pods to fetch logs of, fatal) from the new version's pods."""
    problems: list[str] = []
    log_pods: list[str] = []
    fatal = False
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                problems.append(f"pod {name}: {condition.get('reason', 'Unschedulable')}: "
                                f"{condition.get('message', '')}".rstrip(": "))
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            terminated = (container.get("lastState") or {}).get("terminated") or \
                (container.get("state") or {}).get("terminated") or {}
            reason = waiting.get("reason")
            if terminated.get("reason") == "OOMKilled":
                problems.append(f"pod {name}: OOMKilled (the memory limit is too low for the "
                                "model)")
                fatal = True
                log_pods.append(name)
            elif reason in FATAL_WAITING:
                problems.append(f"pod {name}: {reason}: {waiting.get('message', '')}"
                                .rstrip(": "))
                fatal = True
                if reason not in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
                    log_pods.append(name)
            elif terminated.get("exitCode") not in (None, 0):
                problems.append(f"pod {name}: the container exited with code "
                                f"{terminated.get('exitCode')} ({terminated.get('reason', '')})")
                log_pods.append(name)
    return problems, log_pods, fatal


def classify(deployment: dict[str, Any] | None, pods: list[dict[str, Any]],
             service: dict[str, Any] | None, version: str) -> RolloutStatus:
    """Where the rollout of ``version`` stands (logs are added by the driver)."""
    if deployment is None:
        return RolloutStatus(ready=False, failed=True,
                             message="the Deployment no longer exists")
    live = _version(deployment)
    url = service_url(service)
    if _higher(live, version):
        return RolloutStatus(ready=True, inference_url=url,
                             message=f"version {live} replaced this one")
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and \
                condition.get("reason") == "ProgressDeadlineExceeded":
            problems, _, _ = pod_problems(pods)
            return RolloutStatus(ready=False, failed=True, inference_url=url,
                                 message="ProgressDeadlineExceeded: "
                                         + ("; ".join(problems) or condition.get("message", "")))
    problems, _, fatal = pod_problems(pods)
    if fatal:
        return RolloutStatus(ready=False, failed=True, inference_url=url,
                             message="; ".join(problems))
    counts = (f"{status.get('updatedReplicas', 0)}/{desired} updated, "
              f"{status.get('readyReplicas', 0)} ready, "
              f"{status.get('availableReplicas', 0)} available")
    rolled_out = (status.get("observedGeneration", 0) >= deployment["metadata"].get(
        "generation", 1) and status.get("updatedReplicas", 0) >= desired
        and status.get("replicas", 0) <= status.get("updatedReplicas", 0)
        and status.get("availableReplicas", 0) >= desired)
    if not rolled_out:
        return RolloutStatus(ready=False, inference_url=url,
                             message="; ".join([counts, *problems]))
    if not url:
        return RolloutStatus(ready=False, message=f"{counts}; waiting for the load "
                                                  "balancer's address")
    return RolloutStatus(ready=True, inference_url=url, message=counts)


class KubernetesDriver:
    def __init__(self, api: KubeApi, *, namespace: str = "trainship",
                 service_type: str = "LoadBalancer", workers: int = 1,
                 lb_scheme: str = "internet-facing", lb_source_ranges: list[str] | None = None,
                 arch: str = "amd64") -> None:
        self.api = api
        self.namespace = namespace
        self.service_type = service_type
        self.workers = workers
        self.lb_scheme = lb_scheme
        self.lb_source_ranges = list(lb_source_ranges or [])
        self.arch = arch

    def spec(self, spec: WorkloadSpec) -> WorkloadSpec:
        return replace(spec, namespace=self.namespace, service_type=self.service_type,
                       workers=self.workers, lb_scheme=self.lb_scheme,
                       lb_source_ranges=list(self.lb_source_ranges), arch=self.arch)

    def ensure_namespace(self, namespace: str) -> None:
        try:
            if self.api.get(f"/api/v1/namespaces/{namespace}") is not None:
                return
        except ApiException as exc:
            if exc.status == 403:  # a namespace-scoped identity (EKS access entry): the
                return             # namespace exists, or the first apply says it does not
            raise
        try:
            self.api.request("POST", "/api/v1/namespaces", body={
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace,
                             "labels": {"app.kubernetes.io/managed-by": "trainship"}}})
        except ApiException as exc:
            if exc.status != 409:  # created meanwhile
                raise

    def apply(self, spec: WorkloadSpec) -> Applied:
        spec = self.spec(spec)
        try:
            return self._apply(spec)
        except ApiException as exc:
            # the cluster refused: say what and why (_apply has undone its own part: with
            # no rollout in the state, RecordFailure has nothing to undo)
            raise RolloutFailed(
                f"Kubernetes refused to apply {spec.model_name} v{spec.version} in namespace "
                f"{spec.namespace!r}: {exc.status} {exc.reason}",
                details=str(exc.body or "")[-4000:], step="DeployModel",
                help=APPLY_HELP) from exc

    def _apply(self, spec: WorkloadSpec) -> Applied:
        self.ensure_namespace(spec.namespace)
        handle: dict[str, Any] = {"model_name": spec.model_name,
                                  "serving_name": spec.serving_name, "version": spec.version,
                                  "namespace": spec.namespace, "image_uri": spec.image_uri,
                                  "spec": asdict(spec)}
        for attempt in range(APPLY_ATTEMPTS):
            current = self.api.get(object_path("Deployment", spec.namespace,
                                               spec.serving_name))
            live = _version(current)
            if _higher(live, spec.version):
                handle["superseded_by"] = live
                break
            handle["previous"] = asdict(spec_of(current, spec)) \
                if current and live != spec.version else None
            objects = render(spec)
            if current:  # optimistic lock: fail with 409 if another apply came between
                objects[0]["metadata"]["resourceVersion"] = \
                    current["metadata"]["resourceVersion"]
            try:
                self.api.apply(objects[0])
            except ApiException as exc:
                if exc.status == 409 and attempt + 1 < APPLY_ATTEMPTS:
                    continue
                raise
            try:
                for obj in objects[1:]:
                    self.api.apply(obj)
                self._prune(spec)
            except ApiException:
                # the Deployment went out: undo it (as far as the cluster lets us), report
                with contextlib.suppress(ApiException):
                    self.discard(handle)
                raise
            break
        service = self.api.get(object_path("Service", spec.namespace, spec.serving_name))
        return Applied(inference_url=service_url(service), handle=handle)

    def _prune(self, spec: WorkloadSpec) -> None:
        """Drop the optional objects this spec no longer renders (PDB, HPA)."""
        kinds = {obj["kind"] for obj in render(spec)}
        for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler"):
            if kind not in kinds:
                self.api.delete(kind, spec.namespace, spec.serving_name)

    def status(self, handle: dict[str, Any]) -> RolloutStatus:
        ns, name, version = handle["namespace"], _name(handle), handle["version"]
        deployment = self.api.get(object_path("Deployment", ns, name))
        pods = (self.api.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=(
            f"app.kubernetes.io/instance={name},app.kubernetes.io/version=v{version}"))
            or {}).get("items") or []
        service = self.api.get(object_path("Service", ns, name))
        status = classify(deployment, pods, service, version)
        _, log_pods, _ = pod_problems(pods)
        if log_pods:
            status.details = self.logs(ns, log_pods[0])
        return status

    def invoke(self, handle: dict[str, Any], path: str, payload: Any, *,
               timeout: float) -> Answer | None:
        if handle.get("superseded_by"):
            return None  # never applied: the higher version serves
        ns, name, version = handle["namespace"], _name(handle), handle["version"]
        try:
            pods = (self.api.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=(
                f"app.kubernetes.io/instance={name},app.kubernetes.io/version=v{version}"))
                or {}).get("items") or []
            ready = [p["metadata"]["name"] for p in pods if pod_ready(p)]
            if not ready:
                raise Unreachable(f"no ready pod of {name} v{version} yet")
            # the pod proxy: POST maps to the `create` verb on pods/proxy
            status, body = self.api.post(
                f"/api/v1/namespaces/{ns}/pods/{ready[0]}:{CONTAINER_PORT}/proxy{path}",
                payload, timeout=timeout)
        except urllib3.exceptions.HTTPError as exc:
            raise Unreachable(f"the Kubernetes API did not answer: {exc}") from exc
        except ApiException as exc:  # listing the pods was refused
            if exc.status in (429, 500, 502, 503, 504):
                raise Unreachable(f"listing pods: {exc.status} {exc.reason}") from exc
            raise RolloutFailed(f"The smoke test could not list the pods of {name} "
                                f"v{version}: {exc.status} {exc.reason}",
                                details=str(exc.body or "")[-4000:], help=PROXY_HELP) from exc
        doc = api_status(body) if status >= 400 else None
        if doc is None:
            return Answer(status, body)  # the model's own answer, relayed by the proxy
        # the API server's refusal: it could not reach the pod, or may not proxy to it
        if status in (404, 429, 500, 502, 503, 504):
            raise Unreachable(f"pod proxy to {ready[0]}: {status} {doc.get('message', '')}")
        raise RolloutFailed(f"The Kubernetes API refused the smoke test's request to pod "
                            f"{ready[0]}: {status} {doc.get('reason', '')}",
                            details=body[-4000:], help=PROXY_HELP)

    def logs(self, namespace: str, pod: str) -> str:
        for previous in ("true", "false"):
            try:
                text = self.api.request("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log",
                                        query=[("container", CONTAINER_NAME),
                                               ("tailLines", str(LOG_LINES)),
                                               ("previous", previous)])
            except ApiException:
                continue
            if text:
                return f"last log lines of {pod}:\n{text}"
        return ""

    @contextmanager
    def lock(self, model_name: str) -> Iterator[None]:
        # The Deployment's resourceVersion (see apply) serialises concurrent deployments.
        yield

    def promote(self, handle: dict[str, Any]) -> str | None:
        if handle.get("superseded_by"):
            return str(handle["superseded_by"])
        live = _version(self.api.get(object_path("Deployment", handle["namespace"],
                                                 _name(handle))))
        return live if _higher(live, handle["version"]) else None

    def discard(self, handle: dict[str, Any]) -> None:
        if handle.get("superseded_by"):
            return
        ns, name = handle["namespace"], _name(handle)
        live = _version(self.api.get(object_path("Deployment", ns, name)))
        if live != handle["version"]:
            return  # another version has been applied since: it is not ours to undo
        previous = handle.get("previous")
        if previous:
            spec = WorkloadSpec(**previous)
            for obj in render(spec):
                self.api.apply(obj)
            self._prune(spec)
            return
        for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
                     "Service", "Deployment"):
            self.api.delete(kind, ns, name)


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


def api_from_env() -> KubeApi:
    cluster = os.environ.get("TRAINSHIP_EKS_CLUSTER")
    if cluster:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "")
        return KubeApi(k8s.ApiClient(eks_configuration(cluster, region)))
    configuration = k8s.Configuration()
    try:
        k8s_config.load_kube_config(context=os.environ.get("TRAINSHIP_KUBE_CONTEXT") or None,
                                    client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_incluster_config(client_configuration=configuration)
    return KubeApi(k8s.ApiClient(configuration))


def driver_from_env() -> KubernetesDriver:
    return KubernetesDriver(api_from_env(),
                            namespace=os.environ.get("TRAINSHIP_NAMESPACE", "trainship"),
                            service_type=os.environ.get("TRAINSHIP_SERVICE_TYPE",
                                                        "LoadBalancer"),
                            workers=int(os.environ.get("TRAINSHIP_SERVING_WORKERS", "1")),
                            lb_scheme=os.environ.get("TRAINSHIP_LB_SCHEME")
                            or "internet-facing",
                            lb_source_ranges=source_ranges(
                                os.environ.get("TRAINSHIP_LB_SOURCE_RANGES", "")),
                            arch=os.environ.get("TRAINSHIP_CLUSTER_ARCH") or "amd64")
