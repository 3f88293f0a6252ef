"""A canary on Kubernetes: the split by ready replicas of two Deployments behind the one
Service, and the versions' own metrics.

The split. Without a service mesh the only lever is the number of ready pods of each version
behind the model's Service. The Service selects every pod of the model by its
``app.kubernetes.io/instance`` label (manifests.model_selector); "the control plane
automatically creates EndpointSlices for any Kubernetes Service that has a selector
specified. These EndpointSlices include references to all the Pods that match the Service
selector", and an endpoint's ``ready`` condition is the pod's Ready condition
(https://kubernetes.io/docs/concepts/services-networking/endpoint-slices/). kube-proxy in
iptables mode sends each new CONNECTION to one of the Service's ready endpoints at random
with equal probability ("By default, kube-proxy in iptables mode chooses a backend at
random": https://kubernetes.io/docs/reference/networking/virtual-ips/; the rules are
``-m statistic --mode random --probability 1/n`` per endpoint, "random means equal
probability of hitting any backend", kubernetes/kubernetes#64580). So a version's share is
its share of the ready pods, per connection and on average, not per request: keep-alive
clients stay on the pod they landed on, and the steps are coarse (1 pod of 4 is 25%, not
10%). A load balancer in front (NLB in instance or IP mode) spreads connections its own
way over nodes or pods; the share is still per connection.

How the kubernetes driver does it:

- apply with ``spec.canary`` while another version is live: the live Deployment
  (``<serving name>``) is left alone and the new version runs in a second Deployment,
  ``<serving name>-canary`` (manifests.canary_deployment), with 1 replica. That pod joins
  the Service as soon as it is ready, before the smoke test: a canary takes 1/(n+1) of the
  connections (n: the live replicas) from then on. Keeping it out until ``set_traffic``
  would need a label the Service requires, and a pod's labels come from its Deployment's
  template, whose change replaces the pods (the smoke-tested pod would not be the one that
  takes traffic, and every step would restart them), or readiness gates patched on each
  pod by a controller trainship does not run. An all-at-once rollout gives the new pods
  traffic before its smoke test too (a rolling update), and all of it in the end.
- ``set_traffic(p)``: with n the new version's ``replicas`` (the request's, not the live
  Deployment's: the live one may have had more), the canary is scaled to ``n * p / 100``
  rounded half up, at least 1 and at most n - 1, and the live Deployment to the rest, at
  least 1, while 0 < p < 100 (so with n = 1 every step in between is 50%, 1 pod each);
  100 scales the live one to 0, 0 the canary. Scaling goes through each Deployment's
  ``scale`` subresource (what ``kubectl scale`` does), the one that grows first, the other
  once the grown one's pods are available (waiting up to STEP_WAIT_SECONDS, then a
  TransientError the state machine retries): the model never has fewer ready pods than
  before the step, as with the maxUnavailable: 0 of its rolling updates. That is
  the ``patch`` verb on ``deployments/scale``, which the stack's access policy grants:
  AmazonEKSEditPolicy lists ``deployments`` and ``deployments/scale`` with ``patch`` and
  ``delete``, ``horizontalpodautoscalers`` with ``delete`` and ``pods/proxy`` with
  ``get`` ("Review access policy permissions", Amazon EKS User Guide). The share returned
  is the one of the replicas set; the ready pods follow as the new ones pass their
  readiness probe (a shrinking Deployment's pods leave the endpoints at once, as they
  start terminating), so right after a step the new version's share lags.
- promote after a canary: the live Deployment is updated to the new version (its rolling
  update, to the model's replicas) and, once it rolled out, the canary Deployment is
  deleted: the Service and its URL never change, and the live Deployment stays the one
  ``trainship manifests`` prints. Its new pods take up to minutes (the model loads), so
  PromoteModel waits for them up to PROMOTE_WAIT_SECONDS and otherwise raises
  TransientError (the state machine retries it; the canary keeps serving meanwhile).
- discard during a canary: the live Deployment is scaled back to the replicas it had and
  the canary Deployment deleted, so all traffic is the live version's again. After the
  last step (100%) the live Deployment had no pod: RecordFailure waits up to
  DISCARD_WAIT_SECONDS for one of its pods to be ready before it deletes the canary, then
  deletes it anyway (the model may answer 503 until the old pods are ready).
- remove: the canary Deployment carries the model's labels, so the label-based delete
  removes it with the rest.
- The autoscaler: the pipeline never renders one (DeployModel sets no ``max_replicas``), and
  an apply prunes one that ``trainship manifests --max-replicas`` made (a canary's apply
  too: an HPA would scale the live Deployment back to its minReplicas against the split),
  so nothing scales the Deployments but the driver. A canary Deployment never has one.

scrape: every ready pod of the model (label ``app.kubernetes.io/instance`` = its serving
name: the live Deployment's and the canary's), grouped by ``app.kubernetes.io/version``, is
asked for /metrics through the API server's pod proxy (``GET /api/v1/namespaces/{ns}/pods/
{pod}:8080/proxy/metrics``, the ``get`` verb on ``pods/proxy``), as the smoke test reaches
a pod: no cluster DNS, no load balancer needed. Each pod's text is keyed by the pod's name.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3
from kubernetes.client.rest import ApiException

from trainship.cluster.kube_api import KubeApi, object_path
from trainship.cluster.kube_rollout import pod_ready
from trainship.cluster.manifests import CONTAINER_PORT, FIELD_MANAGER
from trainship.errors import TransientError

# PromoteModel (a 120 s function) waits this long for the live Deployment's new pods
PROMOTE_WAIT_SECONDS = 75
# RecordFailure (a 120 s function) waits this long for a pod of the live version to be
# ready again before it deletes the canary (after a last step, which left it no pod)
DISCARD_WAIT_SECONDS = 60
# ShiftTraffic (a 120 s function) waits this long for the growing Deployment's new pods
# before it scales the other one down (its baseline scrape comes after)
STEP_WAIT_SECONDS = 75
# scrape: a pod's /metrics through the pod proxy gets this long (the inference service
# answers it from memory in milliseconds); the model's pods are asked SCRAPE_THREADS at once
SCRAPE_TIMEOUT_SECONDS = 5
SCRAPE_THREADS = 16


def check_percent(percent: int) -> None:
    if not 0 <= percent <= 100:
        raise ValueError(f"a share of traffic is a percentage from 0 to 100, not {percent}")


def replicas_for(total: int, percent: int) -> tuple[int, int]:
    """(canary, live) replicas for ``percent`` of the model's ``total`` replicas: all to
    one side at 0 and 100; in between ``total * percent / 100`` rounded half up for the
    canary, at least 1 and at most ``total - 1``, the live one the rest and at least 1 (so
    the pair is 2 when ``total`` is 1)."""
    check_percent(percent)
    total = max(total, 1)
    if percent == 100:
        return total, 0
    if percent == 0:
        return 0, total
    # half up (Python's round() takes halves to even: 5 pods at 50% would be 2)
    canary = min(max(math.floor(total * percent / 100 + 0.5), 1), max(total - 1, 1))
    return canary, max(total - canary, 1)


def effective_share(canary: int, live: int) -> int:
    """The canary's share of the pods, in whole percent."""
    return round(100 * canary / (canary + live)) if canary + live else 0


def scale(api: KubeApi, namespace: str, name: str, replicas: int) -> None:
    """Set a Deployment's replicas through its ``scale`` subresource (a merge patch of
    ``spec.replicas`` alone: its pod template, and so its pods, stay as they are)."""
    api.request("PATCH", f"{object_path('Deployment', namespace, name)}/scale",
                body={"spec": {"replicas": replicas}},
                query=[("fieldManager", FIELD_MANAGER)],
                content_type="application/merge-patch+json")


def scrape(api: KubeApi, namespace: str, name: str) -> dict[str, dict[str, str]]:
    """Version (without its ``v``) -> the name of each of its ready pods that answered ->
    its /metrics text. Listing the pods failing on the API server's side (429, 5xx, no
    answer) is a TransientError (worth trying again); a pod that does not answer is left
    out."""
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
    ready = [(_version(pod), pod["metadata"]["name"]) for pod in pods
             if _version(pod) and pod_ready(pod)]
    found: dict[str, dict[str, str]] = {version: {} for version, _ in ready}
    # all pods at once, each given SCRAPE_TIMEOUT_SECONDS: a few hung pods must not use up
    # the step's function (ShiftTraffic, JudgeCanary: 120 s) and fail it as a timeout
    with ThreadPoolExecutor(max_workers=max(1, min(SCRAPE_THREADS, len(ready)))) as pool:
        texts = pool.map(lambda item: _metrics(api, namespace, item[1]), ready)
        for (version, pod_name), text in zip(ready, texts, strict=True):
            if text is not None:
                found[version][pod_name] = text
    return found


def _version(pod: dict[str, Any]) -> str:
    label = ((pod.get("metadata") or {}).get("labels") or {}).get(
        "app.kubernetes.io/version", "")
    return str(label).removeprefix("v")


def _metrics(api: KubeApi, namespace: str, pod: str) -> str | None:
    try:
        text = api.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods/{pod}:{CONTAINER_PORT}/proxy/metrics",
            timeout=SCRAPE_TIMEOUT_SECONDS)
    except (ApiException, urllib3.exceptions.HTTPError):
        return None
    return text if isinstance(text, str) else None
