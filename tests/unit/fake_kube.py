"""An HTTP-level fake of the few Kubernetes API endpoints the kubernetes driver uses.

It checks what a real API server checks for these calls (paths, verbs, content types,
field manager, resourceVersion preconditions, names matching the path) and serves
Deployment/Pod status sequences from a scenario, so the driver's real HTTP client code
runs end to end. Every request is recorded for the tests to assert on.

Server-side apply is merged as the API server merges it: each manager owns the fields it
applied; an apply sets its fields and removes the ones it owned before and no longer sends
(unless another manager owns them too), and leaves fields it never owned alone. Lists are
atomic here (the driver always sends whole lists). A mutating admission webhook like the
AWS Load Balancer Controller's (v2.5+) or EKS Auto Mode's sets ``spec.loadBalancerClass`` on a
new LoadBalancer Service; it runs after the field manager (the apiserver's patch handler
applies the patch, then admission), so nobody owns that field, and it is immutable once set
("may not change once set"), as the API server validates it.

The pod proxy (``POST /api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy/...``) answers from
``proxy_answers`` for pods in the current pod list, a Status 404 for others, and a Status
403 when ``proxy_forbidden`` (an identity without ``create`` on ``pods/proxy``);
``GET .../proxy/metrics`` answers a pod's text from ``metrics``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client as k8s

from tests.helpers import LocalServer
from trainship.cluster.kube_api import KubeApi
from trainship.cluster.kubernetes import KubernetesDriver
from trainship.cluster.manifests import WorkloadSpec
from trainship.config import ClusterSettings

COLLECTIONS = {
    "deployments": ("apps/v1", "Deployment"),
    "services": ("v1", "Service"),
    "networkpolicies": ("networking.k8s.io/v1", "NetworkPolicy"),
    "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudget"),
    "horizontalpodautoscalers": ("autoscaling/v2", "HorizontalPodAutoscaler"),
    "secrets": ("v1", "Secret"),
}
PROXY_PATH = re.compile(
    r"^/api/v1/namespaces/(?P<ns>[a-z0-9-]+)/pods/(?P<pod>[a-z0-9-]+):(?P<port>[0-9]+)"
    r"/proxy(?P<rest>/.*)$")
OBJECT_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[a-z0-9.]+/v[0-9a-z]+))/namespaces/(?P<ns>[a-z0-9-]+)/"
    r"(?P<collection>[a-z]+)(?:/(?P<name>[a-z0-9-]+))?(?P<sub>/log|/scale)?$")


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any
    authorization: str
    headers: dict[str, str] = field(default_factory=dict)  # every header, as received


@dataclass
class FakeKube:
    """State of the fake cluster. ``deployment_statuses``: status dicts served one per GET
    (the last repeats); ``pods``: pod lists served the same way; ``load_balancer``: the
    Service's ingress."""

    namespaces: set[str] = field(default_factory=set)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    deployment_statuses: list[dict[str, Any]] = field(default_factory=list)
    # the same, for the Deployments named here (a canary beside the live one)
    named_statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pods: list[list[dict[str, Any]]] = field(default_factory=list)
    logs: str = ""
    load_balancer: dict[str, Any] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    namespaces_forbidden: bool = False  # a namespace-scoped identity (EKS access entry)
    reject_kind: str = ""  # answer 422 to applies of this kind
    load_balancer_class: str = ""  # the webhook's class for new LoadBalancer Services
    managed: dict[tuple[str, str, str], dict[str, set[tuple[str, ...]]]] = field(
        default_factory=dict)
    proxy_answers: list[tuple[int, Any]] = field(default_factory=list)
    proxy_forbidden: bool = False
    # GET .../proxy/metrics of these pods answers only after this many seconds (a hung pod)
    metrics_hang: dict[str, float] = field(default_factory=dict)
    # a Deployment without statuses given reports all its replicas ready (the canary's
    # scaling waits for them); otherwise such a Deployment reports an empty status
    ready_as_scaled: bool = False
    # GET .../proxy/metrics of a pod in the pod list: its text here (a 503 Status without)
    metrics: dict[str, str] = field(default_factory=dict)
    resource_version: int = 100
    # a Service DELETE keeps it terminating (deletionTimestamp set) for this many more GETs
    # of it, as a LoadBalancer Service's finalizer does until its load balancer is gone
    service_finalizer_gets: int = 0
    terminating: dict[tuple[str, str, str], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_version(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)

    def _sequence(self, items: list[Any], default: Any) -> Any:
        if not items:
            return default
        return items.pop(0) if len(items) > 1 else items[0]

    def handle(self, call: Call) -> tuple[int, Any]:
        if self.namespaces_forbidden and re.match(r"^/api/v1/namespaces(/[a-z0-9-]+)?$",
                                                  call.path):
            return 403, status_doc(403, "namespaces is forbidden")
        if call.path == "/api/v1/namespaces" and call.method == "POST":
            name = call.body["metadata"]["name"]
            if name in self.namespaces:
                return 409, status_doc(409, "AlreadyExists")
            self.namespaces.add(name)
            return 201, call.body
        match = re.match(r"^/api/v1/namespaces/(?P<ns>[a-z0-9-]+)$", call.path)
        if match and call.method == "GET":
            if match["ns"] in self.namespaces:
                return 200, {"kind": "Namespace", "metadata": {"name": match["ns"]}}
            return 404, status_doc(404, "NotFound")
        match = PROXY_PATH.match(call.path)
        if match:
            return self.proxy(call, match)
        match = OBJECT_PATH.match(call.path)
        if not match:
            return 404, status_doc(404, f"no route {call.path}")
        ns, collection, name = match["ns"], match["collection"], match["name"]
        if match["sub"] == "/scale":
            return self.scale(call, (COLLECTIONS.get(collection, ("", ""))[1], ns, name or ""))
        if collection == "pods" and match["sub"] and call.method == "GET":
            return 200, self.logs
        if collection == "pods" and call.method == "GET":
            selector = call.query.get("labelSelector", [""])[0]
            return 200, {"kind": "PodList", "items": [
                p for p in self._sequence(self.pods, []) if _selects(selector, p)]}
        if collection not in COLLECTIONS:
            return 404, status_doc(404, f"unknown collection {collection}")
        if ns not in self.namespaces:
            return 404, status_doc(404, f'namespaces "{ns}" not found')
        api_version, kind = COLLECTIONS[collection]
        key = (kind, ns, name or "")
        if call.method == "GET":
            self._finalize(kind)
        if call.method == "GET" and not name:  # a list, by label selector (a delete)
            selector = call.query.get("labelSelector", [""])[0]
            return 200, {"kind": f"{kind}List", "items": [
                copy.deepcopy(obj) for (k, n, _), obj in sorted(self.objects.items())
                if k == kind and n == ns and _selects(selector, obj)]}
        if call.method == "GET":
            obj = self.objects.get(key)
            if obj is None:
                return 404, status_doc(404, "NotFound")
            obj = copy.deepcopy(obj)
            if kind == "Deployment":
                if name in self.named_statuses:
                    obj["status"] = self._sequence(self.named_statuses[name], {})
                elif self.ready_as_scaled and not self.deployment_statuses:
                    obj["status"] = ready_status(obj["spec"].get("replicas", 1),
                                                 obj["metadata"].get("generation", 1))
                else:
                    obj["status"] = self._sequence(self.deployment_statuses, {})
            if kind == "Service" and self.load_balancer:
                obj["status"] = {"loadBalancer": self.load_balancer}
            return 200, obj
        if call.method == "DELETE" and kind == "Service" and self.service_finalizer_gets \
                and key in self.objects:
            self.objects[key].setdefault("metadata", {})["deletionTimestamp"] = "now"
            self.terminating.setdefault(key, self.service_finalizer_gets)
            return 200, copy.deepcopy(self.objects[key])
        if call.method == "DELETE":
            self.managed.pop(key, None)
            return (200, status_doc(200, "Success")) if self.objects.pop(key, None) else \
                (404, status_doc(404, "NotFound"))
        if call.method == "PATCH":
            return self.server_side_apply(call, key, api_version, kind)
        if call.method == "POST" and not name:  # create: 409 AlreadyExists if it exists
            meta = (call.body or {}).get("metadata") or {}
            key = (kind, ns, meta.get("name", ""))
            if key in self.objects:
                return 409, status_doc(409, "AlreadyExists")
            created = copy.deepcopy(call.body)
            created["metadata"].update(resourceVersion=self.next_version(), generation=1)
            self.objects[key] = created
            return 201, copy.deepcopy(created)
        return 405, status_doc(405, "MethodNotAllowed")

    def scale(self, call: Call, key: tuple[str, str, str]) -> tuple[int, Any]:
        """PATCH of a Deployment's scale subresource: a merge patch of spec.replicas alone
        (what ``kubectl scale`` sends); the replicas change owner to this update's manager."""
        if key[0] != "Deployment" or call.method != "PATCH":
            return 405, status_doc(405, "MethodNotAllowed")
        if call.content_type != "application/merge-patch+json":
            return 415, status_doc(415, f"unsupported patch type {call.content_type}")
        obj = self.objects.get(key)
        if obj is None:
            return 404, status_doc(404, "NotFound")
        replicas = ((call.body or {}).get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0 or set(call.body) != {"spec"} \
                or set(call.body["spec"]) != {"replicas"}:
            return 422, status_doc(422, f"Scale is invalid: {call.body}")
        obj["spec"]["replicas"] = replicas
        for fields in self.managed.get(key, {}).values():
            fields.discard(("spec", "replicas"))
        obj["metadata"].update(resourceVersion=self.next_version(),
                               generation=obj["metadata"].get("generation", 0) + 1)
        return 200, {"kind": "Scale", "apiVersion": "autoscaling/v1",
                     "metadata": {"name": key[2], "namespace": key[1]},
                     "spec": {"replicas": replicas}}

    def _finalize(self, kind: str) -> None:
        """A GET of a kind: terminating objects of it come one GET closer to being gone."""
        for key in [k for k in self.terminating if k[0] == kind]:
            self.terminating[key] -= 1
            if self.terminating[key] < 0:
                del self.terminating[key]
                self.objects.pop(key, None)
                self.managed.pop(key, None)

    def server_side_apply(self, call: Call, key: tuple[str, str, str], api_version: str,
                          kind: str) -> tuple[int, Any]:
        if call.content_type != "application/apply-patch+yaml":
            return 415, status_doc(415, f"unsupported patch type {call.content_type}")
        if kind == self.reject_kind:
            return 422, status_doc(422, f"{kind} is invalid: spec.ports[0].nodePort: "
                                        "Invalid value")
        if call.query.get("fieldManager") != ["trainship"]:
            return 422, status_doc(422, "fieldManager is required for apply patch")
        body = call.body
        meta = body.get("metadata") or {}
        if body.get("apiVersion") != api_version or body.get("kind") != kind:
            return 400, status_doc(400, f"{body.get('apiVersion')}/{body.get('kind')} "
                                        f"does not match {api_version}/{kind}")
        if meta.get("name") != key[2] or meta.get("namespace") != key[1]:
            return 400, status_doc(400, "the name or namespace does not match the path")
        current = self.objects.get(key)
        wanted = meta.get("resourceVersion")
        if wanted is not None and (current is None or
                                   current["metadata"]["resourceVersion"] != wanted):
            return 409, status_doc(409, "Conflict: the object has been modified")
        applied = copy.deepcopy(body)
        applied["metadata"].pop("resourceVersion", None)
        mine = set(_leaves(applied))
        owners = self.managed.setdefault(key, {})
        before = owners.get("trainship", set())
        others = set().union(*(v for k, v in owners.items() if k != "trainship"))
        stored = copy.deepcopy(current) if current else {}
        for path in before - mine - others:  # owned before, no longer sent: removed
            _remove(stored, path)
        for path in mine:
            _set(stored, path, _get(applied, path))
        # mutating admission runs after the field manager: what it sets is owned by nobody
        spec = stored.get("spec") or {}
        if kind == "Service" and current is None and spec.get("type") == "LoadBalancer" \
                and self.load_balancer_class and "loadBalancerClass" not in spec:
            spec["loadBalancerClass"] = self.load_balancer_class
        if kind == "Service" and current is not None:
            old_class = (current.get("spec") or {}).get("loadBalancerClass")
            new_class = spec.get("loadBalancerClass")
            if old_class is not None and new_class != old_class:
                shown = "null" if new_class is None else new_class
                return 422, status_doc(422, f'Service "{key[2]}" is invalid: '
                                            f'spec.loadBalancerClass: Invalid value: "{shown}":'
                                            " may not change once set")
        for manager, fields in owners.items():  # force=true: conflicts change owner
            if manager != "trainship":
                fields -= mine
        owners["trainship"] = mine
        generation = (current or {}).get("metadata", {}).get("generation", 0) + 1
        stored["metadata"].update(resourceVersion=self.next_version(), generation=generation)
        self.objects[key] = stored
        return (200 if current else 201), stored

    def proxy(self, call: Call, match: re.Match[str]) -> tuple[int, Any]:
        if call.method == "GET" and match["rest"] == "/metrics":
            names = {p["metadata"]["name"] for p in (self.pods[0] if self.pods else [])}
            if match["pod"] in names and match["pod"] in self.metrics:
                return 200, self.metrics[match["pod"]]
            return 503, status_doc(503, f'error trying to reach service: pod {match["pod"]}')
        if call.method != "POST":
            return 405, status_doc(405, "MethodNotAllowed")
        if self.proxy_forbidden:
            return 403, status_doc(403, f'pods "{match["pod"]}" is forbidden: User cannot '
                                        'create resource "pods/proxy"')
        names = {p["metadata"]["name"] for p in (self.pods[0] if self.pods else [])}
        if match["pod"] not in names:
            return 404, status_doc(404, f'pods "{match["pod"]}" not found')
        return self._sequence(self.proxy_answers, (200, {"predictions": [0]}))


def _leaves(obj: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(obj, dict) and obj:
        return [leaf for k, v in obj.items() for leaf in _leaves(v, (*prefix, k))]
    return [prefix]


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        obj = obj[part]
    return copy.deepcopy(obj)


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        obj = obj.setdefault(part, {})
    obj[path[-1]] = value


def _remove(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    parents = []
    for part in path[:-1]:
        if not isinstance(obj.get(part), dict):
            return
        parents.append((obj, part))
        obj = obj[part]
    obj.pop(path[-1], None)
    for parent, part in reversed(parents):  # drop maps left empty
        if not parent[part]:
            parent.pop(part)


def _selects(selector: str, pod: dict[str, Any]) -> bool:
    labels = pod.get("metadata", {}).get("labels") or {}
    pairs = [item.split("=", 1) for item in selector.split(",") if item]
    return all(labels.get(k) == v for k, v in pairs)


def status_doc(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "code": code}


class FakeKubeServer:
    def __init__(self, state: FakeKube) -> None:
        self.state = state
        fake = state

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                parsed = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                call = Call(self.command, parsed.path, parse_qs(parsed.query),
                            self.headers.get("Content-Type", ""),
                            json.loads(raw) if raw else None,
                            self.headers.get("Authorization", ""), dict(self.headers.items()))
                with fake.lock:
                    fake.calls.append(call)
                    code, payload = fake.handle(call)
                hang = next((seconds for pod, seconds in fake.metrics_hang.items()
                             if parsed.path.endswith(f"/pods/{pod}:8080/proxy/metrics")), 0)
                time.sleep(hang)  # outside the lock: the other requests go on
                data = payload.encode() if isinstance(payload, str) else \
                    json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if isinstance(payload, str)
                                 else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        self.local = LocalServer(Handler)
        self.url = self.local.url

    def __enter__(self) -> FakeKubeServer:
        self.local.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.local.close()


# --- what the kubernetes driver's tests share ---------------------------------------------

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/trainship-models:iris-v{v}@sha256:" + \
    "ab" * 32
TOKEN = "test-token"


@contextmanager
def fake_cluster(settings: ClusterSettings | None = None
                 ) -> Iterator[tuple[FakeKube, KubernetesDriver]]:
    """A fake cluster served over HTTP, and a kubernetes driver pointed at it."""
    fake = FakeKube()
    with FakeKubeServer(fake) as server:
        configuration = k8s.Configuration()
        configuration.host = server.url
        configuration.api_key = {"authorization": f"Bearer {TOKEN}"}  # as kubeconfig sets it
        yield fake, KubernetesDriver(KubeApi(k8s.ApiClient(configuration)), settings)


def configure(driver: KubernetesDriver, **changes: Any) -> None:
    """Change the driver's cluster settings (as another environment would give them)."""
    driver.settings = replace(driver.settings, **changes)


def spec(version: str, **extra: Any) -> WorkloadSpec:
    return WorkloadSpec(model_name="iris", version=version, image_uri=IMAGE.format(v=version),
                        deployment_id=f"d-{version}", **extra)


def ready_status(replicas: int = 1, generation: int = 1) -> dict[str, Any]:
    return {"observedGeneration": generation, "replicas": replicas,
            "updatedReplicas": replicas, "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [{"type": "Progressing", "status": "True",
                            "reason": "NewReplicaSetAvailable"}]}


def pod(version: str, *, waiting: str | None = None, last_terminated: str | None = None,
        unschedulable: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "model", "restartCount": 3 if waiting else 0,
                                 "state": {"waiting": {"reason": waiting,
                                                       "message": f"{waiting} details"}}
                                 if waiting else {"running": {}}}
    if last_terminated:
        container["lastState"] = {"terminated": {"reason": last_terminated, "exitCode": 137}}
    status: dict[str, Any] = {"containerStatuses": [container]}
    if unschedulable:
        status = {"conditions": [{"type": "PodScheduled", "status": "False",
                                  "reason": "Unschedulable",
                                  "message": "0/3 nodes are available: 3 Insufficient cpu."}]}
    return {"metadata": {"name": f"iris-{version}-abc",
                         "labels": {"app.kubernetes.io/instance": "iris",
                                    "app.kubernetes.io/version": f"v{version}"}},
            "status": status}
