"""The Kubernetes objects that serve one model: what DeployModel applies.

``render(spec)`` returns plain dicts (Deployment, Service, NetworkPolicy,
PodDisruptionBudget when replicas > 1, HorizontalPodAutoscaler when asked for);
``trainship manifests`` prints them as YAML, so GitOps users apply exactly what the
kubernetes driver applies.

One Deployment and one Service per model: a new version is a rolling update of the same
Deployment (maxUnavailable 0: the old pods serve until new ones are ready), so the
Service's address, the inference URL, never changes. A canary (trainship.cluster.
kube_traffic) runs the new version in a second Deployment, ``<serving name>-canary``
(``canary_deployment``), until it is promoted or discarded: the Service, the
NetworkPolicy and the PodDisruptionBudget select the model's pods by
``app.kubernetes.io/instance`` alone (``model_selector``), so they cover both Deployments,
whose own selectors do not overlap (the canary's pods differ in ``app.kubernetes.io/name``).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from trainship.names import serving_name

CONTAINER_PORT = 8080
SERVICE_PORT = 80
RUN_AS_USER = 10001
FIELD_MANAGER = "trainship"
ANNOTATION_PREFIX = "trainship.io"
VERSION_ANNOTATION = f"{ANNOTATION_PREFIX}/model-version"
SERVING_NAME_ANNOTATION = f"{ANNOTATION_PREFIX}/serving-name"
CONTAINER_NAME = "model"
CANARY_SUFFIX = "-canary"
NAME_LABEL = "app.kubernetes.io/name"
DEBUG_ENV = "TRAINSHIP_SERVING_DEBUG"  # trainship.serving.settings reads it
# The model's auth file (trainship.auth): the Secret <serving name>-auth, key ``auth``,
# mounted as a DIRECTORY. The kubelet refreshes a Secret volume in running pods ("Mounted
# Secrets are updated automatically": within "the kubelet sync period + cache propagation
# delay", up to about 1-2 minutes by default), but "a container using a Secret as a subPath volume
# mount does not receive automated Secret updates" (Kubernetes docs, Concepts > Secrets).
AUTH_FILE_ENV = "TRAINSHIP_SERVING_AUTH_FILE"  # trainship.serving.settings reads it
AUTH_KEY = "auth"
AUTH_DIR = "/var/run/trainship/auth"
AUTH_FILE = f"{AUTH_DIR}/{AUTH_KEY}"
AUTH_VOLUME = "auth"
ARCH_LABEL = "kubernetes.io/arch"
ARCHITECTURES = ("amd64", "arm64")
LB_SCHEMES = ("internet-facing", "internal")
# The scheme annotation is read by the AWS Load Balancer Controller (internal NLB by default
# since v2.2; from v2.5 its webhook sets spec.loadBalancerClass on every new LoadBalancer
# Service) and by EKS Auto Mode (loadBalancerClass eks.amazonaws.com/nlb by default). See
# "Network Load Balancer" in the AWS Load Balancer Controller guide and "Use Service
# Annotations to configure Network Load Balancers" in the Amazon EKS User Guide.
LB_SCHEME_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-scheme"
# The legacy in-tree cloud provider ignores the scheme annotation, makes internet-facing
# load balancers by default, and makes an internal one only with this annotation (EKS Auto
# Mode lists it as not supported: it reads the scheme annotation instead).
LB_INTERNAL_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-internal"
# TLS on the load balancer (a bearer token must not cross the internet in clear text: RFC
# 6750 section 5.3). The AWS Load Balancer Controller's Service annotations, section "TLS":
# ``aws-load-balancer-ssl-cert`` "specifies the ARN of one or more certificates managed by
# the AWS Certificate Manager"; ``aws-load-balancer-ssl-ports`` "specifies the frontend
# ports with TLS listeners" (without it every Service port gets one); the backend protocol
# stays ``tcp`` (its default): the load balancer ends TLS and forwards plain HTTP to the
# pods. EKS Auto Mode reads the same annotations for TLS termination ("Use Service
# Annotations to configure Network Load Balancers", Amazon EKS User Guide); the in-tree
# controller's Classic Load Balancer does too (an SSL listener on the port).
LB_SSL_CERT_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"
LB_SSL_PORTS_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-ssl-ports"
TLS_SERVICE_PORT = 443
# an ACM certificate (what the annotation takes); also aws-cn / aws-us-gov partitions
ACM_CERTIFICATE_ARN = re.compile(
    r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+")


@dataclass
class WorkloadSpec:
    """What one model version needs to be served; the drivers' single input.

    ``model_name`` is the MLflow registered-model name; every Kubernetes name and label
    is its ``serving_name`` (a DNS-1123 label, trainship.names)."""

    model_name: str
    version: str
    image_uri: str
    deployment_id: str = ""
    replicas: int = 1
    cpu: str = "500m"
    memory: str = "1Gi"
    namespace: str = "trainship"
    service_type: str = "LoadBalancer"
    max_replicas: int = 0
    target_cpu_percent: int = 70
    progress_deadline_seconds: int = 600
    # the inference service's --workers, --max-batch-rows, --max-wait-ms (None: its default)
    workers: int = 1
    max_batch_rows: int | None = None
    max_wait_ms: float | None = None
    # the deployment asked for tracebacks in error documents (TRAINSHIP_SERVING_DEBUG)
    debug: bool = False
    requirements: list[str] = field(default_factory=list)
    lb_scheme: str = "internet-facing"
    lb_source_ranges: list[str] = field(default_factory=list)
    # an ACM certificate ARN: the load balancer serves HTTPS on 443 with it ("": plain HTTP
    # on 80); LoadBalancer Services only
    lb_certificate_arn: str = ""
    arch: str = "amd64"
    # a canary (issue 15, docs/rollouts.md): when another version of the model serves, run
    # this one beside it, taking no share of the traffic the driver controls until
    # ``set_traffic`` gives it one, instead of replacing it (the Kubernetes driver's second
    # Deployment); without a live version it is an ordinary apply
    canary: bool = False
    # a rollback: an earlier version replaces a higher live one (kubernetes' apply)
    replace_higher: bool = False

    @property
    def serving_name(self) -> str:
        return serving_name(self.model_name)


def auth_secret_name(model_name: str) -> str:
    return f"{serving_name(model_name)}-auth"


def labels(spec: WorkloadSpec, *, with_version: bool = True) -> dict[str, str]:
    selector = {"app.kubernetes.io/name": spec.serving_name,
                "app.kubernetes.io/instance": spec.serving_name}
    if not with_version:
        return selector
    return {**selector, "app.kubernetes.io/version": f"v{spec.version}",
            "app.kubernetes.io/component": "inference",
            "app.kubernetes.io/part-of": "trainship",
            "app.kubernetes.io/managed-by": "trainship"}


def model_selector(spec: WorkloadSpec) -> dict[str, str]:
    """Every pod of the model, whichever Deployment runs it (the live one, a canary): what
    the Service, the NetworkPolicy and the PodDisruptionBudget select."""
    return {"app.kubernetes.io/instance": spec.serving_name}


def canary_name(serving: str) -> str:
    """The canary Deployment of a model (its serving name) and its pods' name label:
    ``<serving name>-canary``, made a serving name itself (at most 63 characters, a label
    value's limit: a long one keeps a stable hash of the whole as its suffix). A model
    may be called ``iris-canary`` too: the kubernetes driver checks whose a Deployment is
    by its ``trainship.io/serving-name`` annotation before it writes one."""
    return serving_name(f"{serving}{CANARY_SUFFIX}")


def model_annotations(spec: WorkloadSpec) -> dict[str, str]:
    return {f"{ANNOTATION_PREFIX}/model-name": spec.model_name,
            SERVING_NAME_ANNOTATION: spec.serving_name,
            VERSION_ANNOTATION: spec.version,
            f"{ANNOTATION_PREFIX}/deployment-id": spec.deployment_id}


def _metadata(spec: WorkloadSpec, **extra: Any) -> dict[str, Any]:
    return {"name": spec.serving_name, "namespace": spec.namespace, "labels": labels(spec),
            "annotations": model_annotations(spec), **extra}


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
            "timeoutSeconds": 2, "failureThreshold": failures}


def serving_args(spec: WorkloadSpec) -> list[str]:
    """The inference service's options of a version (python -m trainship.serving), the same
    for a pod and a process: explicit arguments, so what serves shows in the manifest."""
    args = ["--workers", str(spec.workers)]
    if spec.max_batch_rows is not None:
        args += ["--max-batch-rows", str(spec.max_batch_rows)]
    if spec.max_wait_ms is not None:
        # whole numbers without ".0"; never rounded (":g" keeps 6 digits: 1234567 -> 1.23457e+06)
        wait = spec.max_wait_ms
        args += ["--max-wait-ms", str(int(wait)) if float(wait).is_integer() else repr(wait)]
    return args


def serving_env(spec: WorkloadSpec) -> list[dict[str, str]]:
    """The container's environment: what is served and, only when the deployment asked for
    it, the inference service's debug flag (absent otherwise, so a manifest shows it)."""
    env = [{"name": "TRAINSHIP_MODEL_NAME", "value": spec.model_name},
           {"name": "TRAINSHIP_MODEL_VERSION", "value": spec.version},
           {"name": AUTH_FILE_ENV, "value": AUTH_FILE}]
    if spec.debug:
        env.append({"name": DEBUG_ENV, "value": "true"})
    return env


# Kubernetes takes a terminating pod out of its Service's endpoints and sends it SIGTERM at
# the same time, with nothing ordering the two: kube-proxy's rules and the load balancer's
# targets may still send it new connections after the server stopped accepting. A preStop
# sleep keeps it serving while they catch up ("Configure container lifecycle hooks", AWS
# Prescriptive Guidance; "Gracefully handle the client requests", Amazon EKS Best
# Practices Guide); then SIGTERM, and the service drains what is in flight (up to 30 s,
# trainship.serving.workers). The grace period covers both.
PRESTOP_SECONDS = 15
DRAIN_SECONDS = 30
# the countdown starts before the hook: 5 s of slack after a full drain
TERMINATION_GRACE_SECONDS = PRESTOP_SECONDS + DRAIN_SECONDS + 5


def deployment(spec: WorkloadSpec) -> dict[str, Any]:
    container = {
        "name": CONTAINER_NAME,
        "image": spec.image_uri,
        "imagePullPolicy": "IfNotPresent",
        # replaces the image's CMD (["--port", "8080"]); its ENTRYPOINT names the model
        "args": ["--port", str(CONTAINER_PORT), *serving_args(spec)],
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": serving_env(spec),
        "resources": {"requests": {"cpu": spec.cpu, "memory": spec.memory},
                      "limits": {"cpu": spec.cpu, "memory": spec.memory}},
        # startup allows 5 minutes for loading the model; then readiness gates traffic
        "startupProbe": _probe("/ping", period=5, failures=60),
        "readinessProbe": _probe("/ping", period=5, failures=3),
        "livenessProbe": _probe("/health", period=10, failures=3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "privileged": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         # the whole volume, never a subPath (see AUTH_FILE_ENV)
                         {"name": AUTH_VOLUME, "mountPath": AUTH_DIR, "readOnly": True}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec),
        "spec": {
            # with an autoscaler the replica count is the HPA's: applying it would fight it
            **({} if spec.max_replicas else {"replicas": spec.replicas}),
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": spec.progress_deadline_seconds,
            "selector": {"matchLabels": labels(spec, with_version=False)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(spec), "annotations": model_annotations(spec)},
                "spec": {
                    # the image is built for one architecture (TRAINSHIP_CLUSTER_ARCH)
                    "nodeSelector": {ARCH_LABEL: spec.arch},
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "securityContext": {
                        "runAsNonRoot": True, "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER, "fsGroup": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                                auth_volume(spec.model_name)],
                },
            },
        },
    }


def canary_deployment(spec: WorkloadSpec, replicas: int = 1) -> dict[str, Any]:
    """``spec``'s version as a canary beside the live Deployment: the same pod but for its
    ``app.kubernetes.io/name`` (``<serving name>-canary``, in its own selector too), so that
    neither Deployment's selector matches the other's pods -- the live Deployment's selector
    cannot change (it is immutable in apps/v1) and "if multiple controllers have
    overlapping selectors those controllers might conflict and behave unexpectedly"
    (Kubernetes docs, Deployments > Writing a Deployment Spec > Selector) -- while the
    Service, selecting the instance label alone, sends it its share. Its replica count is
    the driver's to set (kube_traffic.set_traffic); it never has an autoscaler."""
    manifest = deployment(spec)
    name = canary_name(spec.serving_name)
    manifest["metadata"]["name"] = name
    manifest["metadata"]["labels"][NAME_LABEL] = name
    manifest["spec"]["replicas"] = replicas
    manifest["spec"]["selector"]["matchLabels"][NAME_LABEL] = name
    manifest["spec"]["template"]["metadata"]["labels"][NAME_LABEL] = name
    return manifest


def auth_volume(model_name: str) -> dict[str, Any]:
    """The model's auth Secret as a volume: files readable by the pod's group (fsGroup)
    only. Not optional: DeployModel writes the Secret before it applies the Deployment."""
    return {"name": AUTH_VOLUME,
            "secret": {"secretName": auth_secret_name(model_name), "defaultMode": 0o440}}


def auth_secret(model_name: str, namespace: str, text: str) -> dict[str, Any]:
    """The Secret that holds the model's auth file (digests only, never a token), labelled
    like the model's other objects without a version (auth is per model, and a delete finds
    it by these labels)."""
    name = serving_name(model_name)
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": auth_secret_name(model_name), "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": name,
                                "app.kubernetes.io/instance": name,
                                "app.kubernetes.io/component": "inference",
                                "app.kubernetes.io/part-of": "trainship",
                                "app.kubernetes.io/managed-by": "trainship"},
                     "annotations": {f"{ANNOTATION_PREFIX}/model-name": model_name,
                                     f"{ANNOTATION_PREFIX}/serving-name": name}},
        "data": {AUTH_KEY: base64.b64encode(text.encode()).decode()},
    }


def load_balancer_annotations(spec: WorkloadSpec) -> dict[str, str]:
    """What makes the load balancer internet-facing or internal with every AWS controller:
    the scheme annotation (AWS Load Balancer Controller, EKS Auto Mode) and, for internal,
    the in-tree controller's annotation too (without it that one is internet-facing)."""
    if spec.service_type != "LoadBalancer":
        return {}
    annotations = {LB_SCHEME_ANNOTATION: spec.lb_scheme}
    if spec.lb_scheme == "internal":
        annotations[LB_INTERNAL_ANNOTATION] = "true"
    if spec.lb_certificate_arn:
        annotations[LB_SSL_CERT_ANNOTATION] = spec.lb_certificate_arn
        annotations[LB_SSL_PORTS_ANNOTATION] = str(TLS_SERVICE_PORT)
    return annotations


def service(spec: WorkloadSpec) -> dict[str, Any]:
    """The model's stable address. ``spec.loadBalancerClass`` is deliberately absent: the
    AWS Load Balancer Controller's webhook or EKS Auto Mode sets it when the Service is
    created and it is immutable afterwards; server-side apply leaves a field it does not
    own alone, so re-applying never tries to change or clear it."""
    metadata = _metadata(spec)
    metadata["annotations"] = {**metadata["annotations"], **load_balancer_annotations(spec)}
    # with a certificate only 443 (TLS, ended at the load balancer): no plain-HTTP port
    port = ({"name": "https", "port": TLS_SERVICE_PORT} if spec.lb_certificate_arn
            else {"name": "http", "port": SERVICE_PORT})
    body: dict[str, Any] = {
        # the instance alone: the live Deployment's pods and a canary's (model_selector)
        "type": spec.service_type, "selector": model_selector(spec),
        "ports": [{**port, "targetPort": "http", "protocol": "TCP"}]}
    if spec.service_type == "LoadBalancer" and spec.lb_source_ranges:
        # honoured by the in-tree controller, the AWS Load Balancer Controller and EKS Auto
        # Mode alike (Auto Mode does not support the annotation form)
        body["loadBalancerSourceRanges"] = list(spec.lb_source_ranges)
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": body}


def pod_disruption_budget(spec: WorkloadSpec) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(spec),
        "spec": {"maxUnavailable": 1,
                 "selector": {"matchLabels": model_selector(spec)}},
    }


def network_policy(spec: WorkloadSpec) -> dict[str, Any]:
    """Only the inference port is reachable; nothing else in the pod listens anyway."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(spec),
        "spec": {"podSelector": {"matchLabels": model_selector(spec)},
                 "policyTypes": ["Ingress"],
                 "ingress": [{"ports": [{"port": CONTAINER_PORT, "protocol": "TCP"}]}]},
    }


def autoscaler(spec: WorkloadSpec) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(spec),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": spec.serving_name},
            "minReplicas": spec.replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu",
                "target": {"type": "Utilization",
                           "averageUtilization": spec.target_cpu_percent}}}],
        },
    }


def render(spec: WorkloadSpec) -> list[dict[str, Any]]:
    if spec.service_type not in ("LoadBalancer", "ClusterIP", "NodePort"):
        raise ValueError(f"service type {spec.service_type!r}: use LoadBalancer, ClusterIP "
                         "or NodePort")
    if spec.lb_scheme not in LB_SCHEMES:
        raise ValueError(f"load balancer scheme {spec.lb_scheme!r}: use internet-facing or "
                         "internal")
    for cidr in spec.lb_source_ranges:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            raise ValueError(f"load balancer source range {cidr!r} is not a CIDR block "
                             f"({exc})") from None
    if spec.arch not in ARCHITECTURES:
        raise ValueError(f"cluster architecture {spec.arch!r}: use amd64 or arm64")
    if spec.lb_certificate_arn and not ACM_CERTIFICATE_ARN.fullmatch(spec.lb_certificate_arn):
        raise ValueError(f"load balancer certificate {spec.lb_certificate_arn!r} is not an ACM "
                         "certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)")
    if spec.lb_certificate_arn and spec.service_type != "LoadBalancer":
        raise ValueError(f"a load balancer certificate needs a LoadBalancer Service, not "
                         f"{spec.service_type}")
    if spec.max_replicas and spec.max_replicas < spec.replicas:
        raise ValueError(f"max replicas {spec.max_replicas} is below replicas {spec.replicas}")
    objects = [deployment(spec), service(spec), network_policy(spec)]
    if spec.replicas > 1 or spec.max_replicas > 1:
        objects.append(pod_disruption_budget(spec))
    if spec.max_replicas:
        objects.append(autoscaler(spec))
    return objects


def to_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)
