"""A canary on Kubernetes: the versions' own metrics, and why the kubernetes driver does not
split traffic yet.

scrape: every ready pod of the model (label ``app.kubernetes.io/instance`` = its serving
name), grouped by ``app.kubernetes.io/version``, is asked for /metrics through the API
server's pod proxy (``GET /api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/metrics``, the
``get`` verb on ``pods/proxy``), as the smoke test reaches a pod: no cluster DNS, no load
balancer needed.

The split (not implemented): without a service mesh the only lever is the number of ready
pods of each version behind the one Service, i.e. two Deployments (the live one and a canary
one) whose pods the Service's selector both matches, their replica counts in the wanted
ratio. kube-proxy in iptables mode sends each new CONNECTION to one of the Service's ready
endpoints at random with equal probability ("By default, kube-proxy in iptables mode chooses
a backend at random": https://kubernetes.io/docs/reference/networking/virtual-ips/; the
rules are ``-m statistic --mode random --probability 1/n`` per endpoint, and "random means
equal probability of hitting any backend", kubernetes/kubernetes#64580), so a version's
share is its share of the ready endpoints, per connection, not per request: keep-alive
clients stay where they landed, and with few replicas the steps are coarse (1 of 4 pods is
25%, not 10%). Today the driver keeps one Deployment per model, updated in place by a
rolling update; a canary needs a second Deployment and a Service selector that spans both,
which is for a later change (issue 15).
"""

from __future__ import annotations

from typing import Any

import urllib3
from kubernetes.client.rest import ApiException

from trainship.cluster.kube_api import KubeApi
from trainship.cluster.kube_rollout import pod_ready
from trainship.cluster.manifests import CONTAINER_PORT
from trainship.errors import TransientError

SPLIT_NOT_IMPLEMENTED = (
    "The kubernetes driver cannot split a model's traffic yet: it runs one Deployment per "
    "model, updated in place. A canary on Kubernetes needs two Deployments behind the one "
    "Service, the share following their ready replicas (kube-proxy picks a ready endpoint at "
    "random per connection); use an all-at-once rollout there for now.")


def set_traffic(percent: int) -> None:
    """What the kubernetes driver's ``set_traffic`` does today: 100 (all to the version
    just applied, which a rolling update already gives) and 0 are not a split and raise
    NotImplementedError all the same, so that nothing believes a share was set."""
    if not 0 <= percent <= 100:
        raise ValueError(f"a share of traffic is a percentage from 0 to 100, not {percent}")
    raise NotImplementedError(SPLIT_NOT_IMPLEMENTED)


def scrape(api: KubeApi, namespace: str, name: str) -> dict[str, list[str]]:
    """Version (without its ``v``) -> the /metrics text of each of its ready pods that
    answered. Listing the pods failing on the API server's side (429, 5xx, no answer) is a
    TransientError (worth trying again); a pod that does not answer is left out."""
    try:
        pods = (api.get(f"/api/v1/namespaces/{namespace}/pods",
                        labelSelector=f"app.kubernetes.io/instance={name}") or {}
                ).get("items") or []
    except urllib3.exceptions.HTTPError as exc:
        raise TransientError(f"the Kubernetes API did not answer: {exc}") from exc
    except ApiException as exc:
        if exc.status in (429, 500, 502, 503, 504):
            raise TransientError(f"listing the pods of {name}: {exc.status} {exc.reason}") \
                from exc
        raise
    found: dict[str, list[str]] = {}
    for pod in pods:
        version = _version(pod)
        if not version or not pod_ready(pod):
            continue
        texts = found.setdefault(version, [])
        text = _metrics(api, namespace, pod["metadata"]["name"])
        if text is not None:
            texts.append(text)
    return found


def _version(pod: dict[str, Any]) -> str:
    label = ((pod.get("metadata") or {}).get("labels") or {}).get(
        "app.kubernetes.io/version", "")
    return str(label).removeprefix("v")


def _metrics(api: KubeApi, namespace: str, pod: str) -> str | None:
    try:
        text = api.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods/{pod}:{CONTAINER_PORT}/proxy/metrics")
    except (ApiException, urllib3.exceptions.HTTPError):
        return None
    return text if isinstance(text, str) else None
