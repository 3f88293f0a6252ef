"""The ``kubernetes`` cluster driver: any kubeconfig, or EKS (the code the Lambdas run).

- apply: the namespace is created when missing; every object of ``manifests.render`` is
  sent by server-side apply (PATCH ``application/apply-patch+yaml``, field manager
  ``trainship``, force). The Deployment carries the resourceVersion read just before, so
  two deployments of one model racing each other get a 409 instead of silently
  overwriting; a lower version never replaces a higher one that is live.
- status (trainship.cluster.kube_rollout): ``kubectl rollout status`` logic plus the
  pods' reasons (CrashLoopBackOff, ImagePullBackOff, ErrImagePull, OOMKilled,
  Unschedulable, ...) with the last log lines, and the Service's load-balancer address.
- invoke (the smoke test): POST through the API server's pod proxy
  (``/api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/...``) to a ready pod of the new
  version: neither the load balancer's DNS (minutes to appear) nor cluster DNS (not
  resolvable from Lambda) is needed. AmazonEKSEditPolicy allows ``create`` on
  ``pods/proxy`` ("Review access policy permissions", Amazon EKS User Guide).
- discard (after a RolloutFailed): the previous version's objects are applied again, so
  it keeps serving behind the same Service; a first deployment is deleted entirely.

Authentication: trainship.cluster.kube_api (EKS, else the kubeconfig, else in-cluster).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any

import urllib3
from kubernetes.client.rest import ApiException

from trainship.cluster import Answer, Applied, RolloutStatus, Unreachable, kube_auth, kube_traffic
from trainship.cluster.handles import KubernetesHandle, read
from trainship.cluster.kube_api import KubeApi, api_from_settings, object_path
from trainship.cluster.kube_rollout import (
    api_status,
    classify,
    deployed_version,
    is_higher,
    pod_problems,
    pod_ready,
    service_url,
)
from trainship.cluster.manifests import (
    CONTAINER_NAME,
    CONTAINER_PORT,
    DEBUG_ENV,
    VERSION_ANNOTATION,
    WorkloadSpec,
    render,
)
from trainship.config import ClusterSettings
from trainship.errors import RemovalFailed, RolloutFailed, TransientError
from trainship.names import serving_name
from trainship.state import Handle

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

# how long RemoveModel (a 300 s function) waits for a LoadBalancer Service's finalizer
REMOVE_WAIT_SECONDS = 200
# What manifests.render creates for a model, in the order a delete removes it, and the
# model's auth Secret (kube_auth) last: the pods still running mount it.
REMOVE_ORDER = ("HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Service",
                "Deployment", "Secret")


def _name(handle: KubernetesHandle) -> str:
    """The Kubernetes name of a handle's objects: its serving name (trainship.names)."""
    return serving_name(handle["model_name"])


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
        workers=base.workers, max_batch_rows=base.max_batch_rows,
        max_wait_ms=base.max_wait_ms, lb_scheme=base.lb_scheme,
        lb_source_ranges=list(base.lb_source_ranges),
        lb_certificate_arn=base.lb_certificate_arn, arch=base.arch,
        debug=any(e.get("name") == DEBUG_ENV and e.get("value") == "true"
                  for e in container.get("env") or []))


class KubernetesDriver:
    def __init__(self, api: KubeApi, settings: ClusterSettings | None = None, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.settings = settings or ClusterSettings()
        self.sleep, self.clock = sleep, clock

    def spec(self, spec: WorkloadSpec) -> WorkloadSpec:
        """``spec`` with this cluster's settings (namespace, Service, nodes, serving)."""
        s = self.settings
        return replace(spec, namespace=s.namespace, service_type=s.service_type,
                       workers=s.serving.workers, max_batch_rows=s.serving.max_batch_rows,
                       max_wait_ms=s.serving.max_wait_ms, lb_scheme=s.lb_scheme,
                       lb_source_ranges=list(s.lb_source_ranges),
                       lb_certificate_arn=s.lb_certificate_arn, arch=s.arch)

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
        handle: KubernetesHandle = {
            "model_name": spec.model_name, "serving_name": spec.serving_name,
            "version": spec.version, "namespace": spec.namespace,
            "image_uri": spec.image_uri, "spec": asdict(spec)}
        for attempt in range(APPLY_ATTEMPTS):
            current = self.api.get(object_path("Deployment", spec.namespace,
                                               spec.serving_name))
            live = deployed_version(current)
            if live is not None and is_higher(live, spec.version) and not spec.replace_higher:
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
                    self._discard(handle)
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

    def status(self, handle: Handle) -> RolloutStatus:
        mine = read(KubernetesHandle, handle)
        ns, name, version = mine["namespace"], _name(mine), mine["version"]
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

    def invoke(self, handle: Handle, path: str, payload: Any, *, timeout: float,
               headers: dict[str, str] | None = None) -> Answer | None:
        """Through the API server's pod proxy. It does not pass ``Authorization`` on: its
        authentication filter deletes that header once it authenticated the caller
        ("authorization header is not required anymore in case of a successful
        authentication": WithAuthentication, k8s.io/apiserver pkg/endpoints/filters/
        authentication.go), so the smoke test's token travels as X-Trainship-Token."""
        mine = read(KubernetesHandle, handle)
        if mine.get("superseded_by"):
            return None  # never applied: the higher version serves
        ns, name, version = mine["namespace"], _name(mine), mine["version"]
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
                payload, timeout=timeout, headers=headers)
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

    def read_auth(self, model_name: str) -> str | None:
        return kube_auth.read_auth(self.api, self.settings.namespace, model_name)

    def write_auth(self, model_name: str, text: str) -> None:
        """The Secret, in a namespace created if need be (this comes before apply)."""
        self.ensure_namespace(self.settings.namespace)
        kube_auth.write_auth(self.api, self.settings.namespace, model_name, text)

    def update_auth(self, model_name: str,
                    change: Callable[[str | None], str | None]) -> str | None:
        """A compare-and-swap on the Secret (kube_auth.update_auth), in a namespace created
        if need be (DeployModel's comes before apply)."""
        self.ensure_namespace(self.settings.namespace)
        return kube_auth.update_auth(self.api, self.settings.namespace, model_name, change)

    @contextmanager
    def lock(self, model_name: str) -> Iterator[None]:
        # No lock: the Deployment's resourceVersion (see apply) serialises concurrent
        # deployments, the auth Secret's (update_auth) concurrent auth changes.
        yield

    def promote(self, handle: Handle, *, replace_higher: bool = False) -> str | None:
        """The Service selects the Deployment's pods: the version applied is live once it
        rolled out. Superseded when a higher version was applied meanwhile (for a rollback:
        when any other version was)."""
        mine = read(KubernetesHandle, handle)
        if "superseded_by" in mine:
            return mine["superseded_by"]
        live = deployed_version(self.api.get(object_path("Deployment", mine["namespace"],
                                                 _name(mine))))
        if replace_higher:
            return live if live is not None and live != mine["version"] else None
        return live if is_higher(live, mine["version"]) else None

    def set_traffic(self, handle: Handle, percent: int) -> None:
        """Not yet: NotImplementedError (trainship.cluster.kube_traffic says why)."""
        read(KubernetesHandle, handle)
        kube_traffic.set_traffic(percent)

    def scrape(self, model_name: str) -> dict[str, list[str]]:
        """Each ready pod's /metrics through the pod proxy (trainship.cluster.kube_traffic)."""
        return kube_traffic.scrape(self.api, self.settings.namespace, serving_name(model_name))

    def discard(self, handle: Handle) -> None:
        self._discard(read(KubernetesHandle, handle))

    def _discard(self, handle: KubernetesHandle) -> None:
        if handle.get("superseded_by"):
            return
        ns, name = handle["namespace"], _name(handle)
        live = deployed_version(self.api.get(object_path("Deployment", ns, name)))
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

    def remove(self, model_name: str) -> list[str]:
        """Take the model out of service (a delete): every object trainship made for it in
        the namespace, found by label (``app.kubernetes.io/instance`` = its serving name,
        managed by trainship), autoscaler first and Deployment last. Deleting the Service
        of type LoadBalancer is what releases its load balancer (and stops its cost). What
        was removed, as ``Kind/name``; nothing when nothing was there."""
        ns, name = self.settings.namespace, serving_name(model_name)
        selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/managed-by=trainship"
        removed = []
        for kind in REMOVE_ORDER:
            try:
                found = (self.api.get(object_path(kind, ns), labelSelector=selector)
                         or {}).get("items") or []
                for obj in found:
                    self.api.delete(kind, ns, obj["metadata"]["name"])
                    removed.append(f"{kind}/{obj['metadata']['name']} in namespace {ns}")
            except ApiException as exc:
                raise RemovalFailed(
                    f"Kubernetes refused to remove the {kind}s of {model_name} in namespace "
                    f"{ns!r}: {exc.status} {exc.reason}"
                    + (f" (removed before: {', '.join(removed)})" if removed else ""),
                    details=str(exc.body or "")[-4000:], step="RemoveModel") from exc
        self._wait_until_released(model_name, ns, selector)
        return removed

    def _wait_until_released(self, model_name: str, ns: str, selector: str) -> None:
        """Wait until the model's Services are gone. A Service of type LoadBalancer keeps a
        finalizer until its load balancer is deleted: "the Service resource is not fully
        deleted until the correlating load balancer resources are deleted" (KEP-980,
        Service LoadBalancer finalizer; the AWS Load Balancer Controller adds its own), and
        a deployment applied meanwhile would patch the terminating Service and lose it. Not
        gone within REMOVE_WAIT_SECONDS: TransientError (the state machine tries again)."""
        deadline = self.clock() + REMOVE_WAIT_SECONDS
        delay = 1.0
        while True:
            left = (self.api.get(object_path("Service", ns), labelSelector=selector)
                    or {}).get("items") or []
            if not left:
                return
            if self.clock() + delay > deadline:
                raise TransientError(
                    f"The Service of {model_name} is still being deleted (its load balancer "
                    f"is released first) after {REMOVE_WAIT_SECONDS} s", step="RemoveModel",
                    details=", ".join(o["metadata"]["name"] for o in left))
            self.sleep(delay)
            delay = min(delay * 2, 10.0)


def driver_from_settings(settings: ClusterSettings) -> KubernetesDriver:
    return KubernetesDriver(api_from_settings(settings), settings)
