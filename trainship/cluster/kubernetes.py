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
- a canary (``WorkloadSpec.canary``): a second Deployment beside the live one, the share
  following the ready replicas of the two (trainship.cluster.kube_traffic says how and
  why): set_traffic scales them, promote updates the live Deployment to the new version
  and deletes the canary, discard deletes the canary and scales the live one back.

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
    rolled_out,
    service_url,
)
from trainship.cluster.manifests import (
    CONTAINER_NAME,
    CONTAINER_PORT,
    DEBUG_ENV,
    SERVING_NAME_ANNOTATION,
    VERSION_ANNOTATION,
    WorkloadSpec,
    canary_deployment,
    canary_name,
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


@contextmanager
def _refusals(what: str, step: str) -> Iterator[None]:
    """The cluster's refusals of a canary's calls, as the state machine knows them: a
    conflict, throttling, a 5xx or no answer are a TransientError (its Retry tries the step
    again), anything else a RolloutFailed naming ``what`` and why."""
    try:
        yield
    except urllib3.exceptions.HTTPError as exc:
        raise TransientError(f"{what}: the Kubernetes API did not answer: {exc}",
                             step=step) from exc
    except ApiException as exc:
        if exc.status in (409, 429, 500, 502, 503, 504):
            raise TransientError(f"{what}: {exc.status} {exc.reason}", step=step) from exc
        raise RolloutFailed(f"Kubernetes refused {what}: {exc.status} {exc.reason}",
                            details=str(exc.body or "")[-4000:], step=step,
                            help=APPLY_HELP) from exc


def _available(deployment: dict[str, Any]) -> int:
    """A Deployment's available replicas (its status')."""
    return int((deployment.get("status") or {}).get("availableReplicas") or 0)


def _previous_version(handle: KubernetesHandle) -> str:
    """The version that was live when ``handle`` was applied ("" on a first deployment)."""
    return str((handle.get("previous") or {}).get("version") or "")


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
        live_version = ""
        for attempt in range(APPLY_ATTEMPTS):
            current = self._own(self.api.get(object_path("Deployment", spec.namespace,
                                                         spec.serving_name)), spec)
            live = deployed_version(current)
            if live is not None and is_higher(live, spec.version) and not spec.replace_higher:
                handle["superseded_by"] = live
                break
            live_version = live if live is not None and live != spec.version else ""
            if current and live_version and spec.canary and not spec.replace_higher:
                if self._apply_canary(spec, handle, current, last=attempt + 1 == APPLY_ATTEMPTS):
                    break
                continue
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
        return Applied(inference_url=service_url(service), handle=handle,
                       live_version="" if handle.get("superseded_by") else live_version)

    def _own(self, deployment: dict[str, Any] | None,
             spec: WorkloadSpec) -> dict[str, Any] | None:
        """``deployment`` when it is one of this model's (or None), else RolloutFailed: a
        model may be called like another's canary (``iris-canary``, manifests.canary_name),
        and one must never overwrite the other."""
        if deployment is None:
            return None
        owner = ((deployment.get("metadata") or {}).get("annotations") or {}).get(
            SERVING_NAME_ANNOTATION)
        if owner is not None and owner != spec.serving_name:
            raise RolloutFailed(
                f"The Deployment {deployment['metadata'].get('name')} in namespace "
                f"{spec.namespace!r} belongs to the model served as {owner!r}, not to "
                f"{spec.model_name}", step="DeployModel",
                help="A model named like another model's canary Deployment "
                     "(<serving name>-canary) cannot be served beside it in one namespace; "
                     "use another namespace or model name.")
        return deployment

    def _apply_canary(self, spec: WorkloadSpec, handle: KubernetesHandle,
                      current: dict[str, Any], *, last: bool) -> bool:
        """The new version in the canary Deployment with 1 replica, the live Deployment as it
        is (kube_traffic). False: another apply wrote the canary meanwhile (409), try again.
        A higher version's canary there supersedes this one."""
        name = canary_name(spec.serving_name)
        existing = self._own(self.api.get(object_path("Deployment", spec.namespace, name)),
                             spec)
        other = deployed_version(existing)
        if other is not None and is_higher(other, spec.version):
            handle["superseded_by"] = other
            return True
        previous = spec_of(current, spec)
        handle["canary"] = True
        handle["previous"] = asdict(previous)
        handle["live_replicas"] = int(current["spec"].get("replicas") or 1)
        canary = canary_deployment(spec)
        if existing:  # an older canary (in flight, or left by a failed discard): replaced
            canary["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        try:
            self.api.apply(canary)
        except ApiException as exc:
            if exc.status == 409 and not last:
                return False
            raise
        try:
            # the live version's Service, NetworkPolicy and PDB again: selectors by the
            # instance label alone (an older Service also required the live pods' name)
            for obj in render(previous)[1:]:
                self.api.apply(obj)
            # an autoscaler would scale the live Deployment back against the split; the
            # pipeline renders none, and any apply prunes one (kube_traffic)
            self.api.delete("HorizontalPodAutoscaler", spec.namespace, spec.serving_name)
        except ApiException:
            with contextlib.suppress(ApiException):
                self._withdraw(handle)
            raise
        return True

    def _prune(self, spec: WorkloadSpec) -> None:
        """Drop the optional objects this spec no longer renders (PDB, HPA)."""
        kinds = {obj["kind"] for obj in render(spec)}
        for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler"):
            if kind not in kinds:
                self.api.delete(kind, spec.namespace, spec.serving_name)

    def status(self, handle: Handle) -> RolloutStatus:
        mine = read(KubernetesHandle, handle)
        ns, name, version = mine["namespace"], _name(mine), mine["version"]
        if mine.get("superseded_by"):  # nothing applied: the higher version serves
            service = self.api.get(object_path("Service", ns, name))
            return RolloutStatus(ready=True, inference_url=service_url(service),
                                 message=f"version {mine['superseded_by']} replaced this one")
        deployment = self.api.get(object_path(
            "Deployment", ns, canary_name(name) if mine.get("canary") else name))
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
        when any other version was). After a canary: the live Deployment is updated to this
        version and the canary deleted once it rolled out (kube_traffic)."""
        mine = read(KubernetesHandle, handle)
        if "superseded_by" in mine:
            return mine["superseded_by"]
        if mine.get("canary"):
            with _refusals(f"promoting the canary of {mine['model_name']} v{mine['version']}",
                           "PromoteModel"):
                return self._promote_canary(mine)
        live = deployed_version(self.api.get(object_path("Deployment", mine["namespace"],
                                                 _name(mine))))
        if replace_higher:
            return live if live is not None and live != mine["version"] else None
        return live if is_higher(live, mine["version"]) else None

    def _promote_canary(self, mine: KubernetesHandle) -> str | None:
        ns, name, version = mine["namespace"], _name(mine), mine["version"]
        spec = WorkloadSpec(**mine["spec"])
        main = self.api.get(object_path("Deployment", ns, name))
        live = deployed_version(main)
        canary = self._canary(mine)
        if is_higher(live, version):  # a higher version went live meanwhile
            if canary is not None:
                self.api.delete("Deployment", ns, canary_name(name))
            return live
        if canary is None:
            other = deployed_version(self.api.get(object_path("Deployment", ns,
                                                              canary_name(name))))
            if is_higher(other, version):  # a higher version's canary replaced this one
                return other
        if live != version:
            objects = render(spec)
            if main:  # the same optimistic lock as apply's
                objects[0]["metadata"]["resourceVersion"] = main["metadata"]["resourceVersion"]
            for obj in objects:
                self.api.apply(obj)
            self._prune(spec)
        if canary is not None:
            self._wait(rolled_out, ns, name, kube_traffic.PROMOTE_WAIT_SECONDS,
                       f"{name} rolling out v{version} (its canary serves it meanwhile)")
            self.api.delete("Deployment", ns, canary_name(name))
        return None

    def _canary(self, mine: KubernetesHandle) -> dict[str, Any] | None:
        """The canary Deployment when it runs this handle's version, else None."""
        canary: dict[str, Any] | None = self.api.get(object_path(
            "Deployment", mine["namespace"], canary_name(_name(mine))))
        if canary is None or deployed_version(canary) != mine["version"] or \
                ((canary["metadata"].get("annotations") or {}).get(SERVING_NAME_ANNOTATION)
                 not in (None, _name(mine))):
            return None
        return canary

    def _shares_with(self, mine: KubernetesHandle) -> bool:
        """Whether the live Deployment still runs the version this canary shares with."""
        main = self.api.get(object_path("Deployment", mine["namespace"], _name(mine)))
        return deployed_version(main) == _previous_version(mine)

    def _wait(self, done: Callable[[dict[str, Any]], bool], ns: str, name: str,
              seconds: float, what: str, *, required: bool = True) -> bool:
        """Poll Deployment ``name`` until ``done`` says so, at most ``seconds``. Not done in
        time: TransientError naming ``what`` (the state machine tries the step again), or
        False when not ``required``."""
        deadline = self.clock() + seconds
        delay = 2.0
        while True:
            deployment = self.api.get(object_path("Deployment", ns, name))
            if deployment is not None and done(deployment):
                return True
            if self.clock() + delay > deadline:
                if required:
                    raise TransientError(f"still waiting after {seconds:.0f} s: {what}")
                return False
            self.sleep(delay)

    def set_traffic(self, handle: Handle, percent: int) -> int:
        """Scale the canary and the live Deployments to the share (kube_traffic): the share
        of the replicas set, which the ready pods follow. A version applied in place of the
        live one (no canary) has all of it already: 100 is all it can take."""
        kube_traffic.check_percent(percent)
        mine = read(KubernetesHandle, handle)
        version = mine["version"]
        if mine.get("superseded_by") or not mine.get("canary"):
            if percent == 100 and not mine.get("superseded_by"):
                return 100
            raise ValueError(f"{mine['model_name']} v{version} was not applied beside a live "
                             f"version: it cannot take {percent}% of the traffic")
        with _refusals(f"scaling {mine['model_name']}'s Deployments to {percent}% for "
                       f"v{version}", "ShiftTraffic"):
            return self._set_traffic(mine, percent)

    def _set_traffic(self, mine: KubernetesHandle, percent: int) -> int:
        ns, name, version = mine["namespace"], _name(mine), mine["version"]
        canary = self._canary(mine)
        if canary is None:
            raise RolloutFailed(f"The canary Deployment of {mine['model_name']} no longer runs "
                                f"v{version} (a later deployment replaced or removed it)",
                                step="ShiftTraffic")
        if not self._shares_with(mine):
            raise RolloutFailed(f"{mine['model_name']} v{version} no longer shares the traffic "
                                f"with v{_previous_version(mine)}: a later deployment replaced "
                                "the live version", step="ShiftTraffic")
        new, old = kube_traffic.replicas_for(int(mine["spec"].get("replicas") or 1), percent)
        now = int((canary.get("spec") or {}).get("replicas") or 0)
        (grow, more), (shrink, fewer) = ((canary_name(name), new), (name, old)) \
            if new >= now else ((name, old), (canary_name(name), new))
        kube_traffic.scale(self.api, ns, grow, more)
        # the model keeps its capacity (maxUnavailable: 0, as in its rolling updates): the
        # other side goes down once the growing side's pods are ready; not in time, a
        # TransientError, and the state machine's retry goes on waiting
        self._wait(lambda d: _available(d) >= more, ns, grow,
                   kube_traffic.STEP_WAIT_SECONDS,
                   f"{more} ready pods of {grow} before {shrink} goes down to {fewer}")
        kube_traffic.scale(self.api, ns, shrink, fewer)
        return kube_traffic.effective_share(new, old)

    def scrape(self, model_name: str) -> dict[str, dict[str, str]]:
        """Each ready pod's /metrics through the pod proxy, by pod name, the canary's and the
        live Deployment's alike (trainship.cluster.kube_traffic)."""
        return kube_traffic.scrape(self.api, self.settings.namespace, serving_name(model_name))

    def discard(self, handle: Handle) -> None:
        self._discard(read(KubernetesHandle, handle))

    def _discard(self, handle: KubernetesHandle) -> None:
        if handle.get("superseded_by"):
            return
        if handle.get("canary"):
            self._withdraw(handle)
        ns, name = handle["namespace"], _name(handle)
        live = deployed_version(self.api.get(object_path("Deployment", ns, name)))
        if live != handle["version"]:
            return  # another version has been applied since: it is not ours to undo
        previous = handle.get("previous")
        if previous:  # (after a canary: its promotion had begun)
            spec = WorkloadSpec(**previous)
            for obj in render(spec):
                self.api.apply(obj)
            self._prune(spec)
            return
        for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
                     "Service", "Deployment"):
            self.api.delete(kind, ns, name)

    def _withdraw(self, handle: KubernetesHandle) -> None:
        """A canary's share goes back to the live version: the live Deployment scaled back to
        the replicas it had, or, when PromoteModel had begun (it already runs the new
        version), applied as the previous version again; then the canary Deployment deleted
        -- after a pod of the live Deployment is ready, waiting up to
        kube_traffic.DISCARD_WAIT_SECONDS for it (after a last step it had none, and a slow
        promotion's new pods may not be ready: deleting the canary first would leave the
        Service without a ready pod). A later deployment's live Deployment is left as it
        is."""
        if self._canary(handle) is None:
            return  # gone already, or another version's now
        ns, name = handle["namespace"], _name(handle)
        main = self.api.get(object_path("Deployment", ns, name))
        live = deployed_version(main) if main is not None else None
        previous = handle.get("previous")
        if live is not None and live == _previous_version(handle):
            replicas = int(handle.get("live_replicas") or 1)
            if int((main.get("spec") or {}).get("replicas") or 0) != replicas:
                kube_traffic.scale(self.api, ns, name, replicas)
        elif live == handle["version"] and previous:
            spec = WorkloadSpec(**previous)
            for obj in render(spec):
                self.api.apply(obj)
            self._prune(spec)
        if live is not None:
            self._wait(lambda d: _available(d) > 0, ns, name, kube_traffic.DISCARD_WAIT_SECONDS,
                       f"a ready pod of {name}", required=False)
        self.api.delete("Deployment", ns, canary_name(name))

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
