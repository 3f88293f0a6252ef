"""Where a rollout on Kubernetes stands, read from the objects the kubernetes driver gets:
``kubectl rollout status`` logic plus the pods' reasons (CrashLoopBackOff,
ImagePullBackOff, ErrImagePull, OOMKilled, Unschedulable, ...) and the Service's
load-balancer address."""

from __future__ import annotations

import json
from typing import Any

from trainship.cluster import RolloutStatus
from trainship.cluster.manifests import LB_SSL_CERT_ANNOTATION, VERSION_ANNOTATION

FATAL_WAITING = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                 "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


def deployed_version(deployment: dict[str, Any] | None) -> str | None:
    """The model version a Deployment serves (its version annotation)."""
    if not deployment:
        return None
    return (deployment.get("metadata", {}).get("annotations") or {}).get(VERSION_ANNOTATION)


def is_higher(a: str | None, b: str) -> bool:
    """Whether version ``a`` is a higher version than ``b``."""
    return a is not None and a.isdigit() and b.isdigit() and int(a) > int(b)


def service_url(service: dict[str, Any] | None) -> str:
    """The inference URL the Service gives: the load balancer's address, or cluster DNS."""
    if not service:
        return ""
    spec, meta = service.get("spec") or {}, service.get("metadata") or {}
    port = next((p.get("port") for p in spec.get("ports") or []), 80)
    suffix = "" if port == 80 else f":{port}"
    if spec.get("type") == "LoadBalancer":
        # a certificate on the load balancer (trainship:certificateArn): TLS on 443
        tls = LB_SSL_CERT_ANNOTATION in (meta.get("annotations") or {})
        scheme, suffix = ("https", "" if port == 443 else f":{port}") if tls else ("http", suffix)
        for ingress in (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []:
            address = ingress.get("hostname") or ingress.get("ip")
            if address:
                return f"{scheme}://{address}{suffix}"
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


def rolled_out(deployment: dict[str, Any]) -> bool:
    """``kubectl rollout status``'s test: the controller saw the latest spec, every replica
    runs it and is available, and no old one is left."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    return bool(status.get("observedGeneration", 0) >= (deployment.get("metadata") or {}).get(
        "generation", 1) and status.get("updatedReplicas", 0) >= desired
        and status.get("replicas", 0) <= status.get("updatedReplicas", 0)
        and status.get("availableReplicas", 0) >= desired)


def classify(deployment: dict[str, Any] | None, pods: list[dict[str, Any]],
             service: dict[str, Any] | None, version: str) -> RolloutStatus:
    """Where the rollout of ``version`` stands (logs are added by the driver)."""
    if deployment is None:
        return RolloutStatus(ready=False, failed=True,
                             message="the Deployment no longer exists")
    live = deployed_version(deployment)
    url = service_url(service)
    if is_higher(live, version):
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
    if not rolled_out(deployment):
        return RolloutStatus(ready=False, inference_url=url,
                             message="; ".join([counts, *problems]))
    if not url:
        return RolloutStatus(ready=False, message=f"{counts}; waiting for the load "
                                                  "balancer's address")
    return RolloutStatus(ready=True, inference_url=url, message=counts)
