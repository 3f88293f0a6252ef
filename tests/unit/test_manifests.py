"""The manifests DeployModel applies: valid against the Kubernetes schemas (strict), clean
under checkov's Kubernetes checks, and carrying what the issue asks for."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainship import auth
from trainship.cli import main as cli_main
from trainship.cluster.kube_rollout import service_url
from trainship.cluster.kubernetes import KubernetesDriver
from trainship.cluster.manifests import (
    AUTH_DIR,
    AUTH_FILE,
    AUTH_FILE_ENV,
    LB_INTERNAL_ANNOTATION,
    LB_SCHEME_ANNOTATION,
    LB_SSL_CERT_ANNOTATION,
    LB_SSL_PORTS_ANNOTATION,
    PRESTOP_SECONDS,
    WorkloadSpec,
    auth_secret,
    canary_deployment,
    render,
    to_yaml,
)
from trainship.cluster.podman import podman_manifest
from trainship.config import ClusterSettings, source_ranges
from trainship.serving.settings import ServingSettings

REPO = Path(__file__).resolve().parents[2]
CERTIFICATE = ("arn:aws:acm:eu-west-1:111122223333:certificate/"
               "12345678-1234-1234-1234-123456789012")
IMAGE = "127.0.0.1:5000/trainship-models:iris-v3@sha256:" + "a" * 64
VARIANTS = {
    "single": WorkloadSpec("iris", "3", IMAGE),
    "replicated": WorkloadSpec("iris", "3", IMAGE, replicas=3, deployment_id="d-9"),
    "autoscaled": WorkloadSpec("iris", "3", IMAGE, replicas=2, max_replicas=6,
                               service_type="ClusterIP", namespace="ml"),
    "internal-arm": WorkloadSpec("iris", "3", IMAGE, lb_scheme="internal",
                                 lb_source_ranges=["10.0.0.0/8", "192.168.1.0/24"],
                                 arch="arm64"),
    # a registered-model name that is not a DNS-1123 label: objects use its serving name
    "registered-name": WorkloadSpec("Test_Model.v2", "3", IMAGE, replicas=2),
    # the inference service's knobs become the container's arguments
    "tuned-serving": WorkloadSpec("iris", "3", IMAGE, workers=4, max_batch_rows=64,
                                  max_wait_ms=0.5),
    # the deployment asked for tracebacks: TRAINSHIP_SERVING_DEBUG in the container's env
    "debug": WorkloadSpec("iris", "3", IMAGE, debug=True),
    # HTTPS on the load balancer (trainship:certificateArn)
    "tls": WorkloadSpec("iris", "3", IMAGE, lb_certificate_arn=CERTIFICATE),
    # a canary: the canary Deployment too (trainship.cluster.kube_traffic)
    "canary": WorkloadSpec("iris", "3", IMAGE, replicas=2, canary=True),
}


AUTH_TEXT = auth.render(auth.with_token(auth.AuthFile(), auth.digest("tsk_x"), pending=False))


@pytest.fixture(params=sorted(VARIANTS))
def manifest_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The objects of a variant, and the auth Secret the kubernetes driver writes first."""
    path = tmp_path / f"{request.param}.yaml"
    spec = VARIANTS[request.param]
    path.write_text(to_yaml([*render(spec),
                             *([canary_deployment(spec, replicas=2)] if spec.canary else []),
                             auth_secret(spec.model_name, spec.namespace, AUTH_TEXT)]))
    return path


def test_strict_schema_validation(manifest_file: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict",
                           str(manifest_file)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    name = VARIANTS[manifest_file.stem].serving_name  # iris; test-model-v2 (trainship.names)
    assert f"passed for resource deployment/{name}" in proc.stdout + proc.stderr
    assert f"passed for resource secret/{name}-auth" in proc.stdout + proc.stderr


@pytest.mark.parametrize("variant", ["replicated", "registered-name", "autoscaled"])
def test_the_canary_deployment_passes_strict_validation(variant: str, tmp_path: Path) -> None:
    spec = VARIANTS[variant]
    path = tmp_path / "canary.yaml"
    path.write_text(to_yaml([canary_deployment(spec, replicas=2)]))
    proc = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"passed for resource deployment/{spec.serving_name}-canary" in \
        proc.stdout + proc.stderr


def test_service_policy_and_budget_select_the_model_by_its_instance_alone() -> None:
    objects = {obj["kind"]: obj for obj in render(VARIANTS["replicated"])}
    instance = {"app.kubernetes.io/instance": "iris"}
    assert objects["Service"]["spec"]["selector"] == instance
    assert objects["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"] == instance
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == instance
    # the Deployment's own selector is as it always was (immutable in apps/v1)
    assert objects["Deployment"]["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "iris", "app.kubernetes.io/instance": "iris"}


def test_strict_validation_catches_a_bad_field(tmp_path: Path) -> None:
    objects = render(VARIANTS["single"])
    objects[0]["spec"]["template"]["spec"]["containers"][0]["imagePullPolisy"] = "Always"
    path = tmp_path / "bad.yaml"
    path.write_text(to_yaml(objects))
    proc = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "imagePullPolisy" in proc.stdout + proc.stderr


@pytest.mark.infra  # the checkov venv: make test-infra (and make test)
def test_checkov_kubernetes_checks(manifest_file: Path) -> None:
    checkov = REPO / ".venv" / "checkov" / "bin" / "checkov"
    assert checkov.exists(), "make test installs checkov into .venv/checkov"
    proc = subprocess.run([str(checkov), "-f", str(manifest_file), "--framework", "kubernetes",
                           "--skip-download", "--compact", "--quiet", "-o", "json"],
                          capture_output=True, text=True)
    import json

    report = json.loads(proc.stdout)
    summary = report["summary"]
    failed = [c["check_id"] for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["passed"] >= 80 and summary["skipped"] == 0


def test_restricted_security_and_rollout_settings() -> None:
    deployment, service, policy, *rest = render(VARIANTS["replicated"])
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["volumes"][0]["emptyDir"]
    assert container["image"] == IMAGE
    assert {p: container[p]["httpGet"]["path"] for p in
            ("startupProbe", "readinessProbe", "livenessProbe")} == {
        "startupProbe": "/ping", "readinessProbe": "/ping", "livenessProbe": "/health"}
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["spec"]["progressDeadlineSeconds"] == 600
    assert deployment["metadata"]["annotations"]["trainship.io/deployment-id"] == "d-9"
    assert service["spec"]["type"] == "LoadBalancer"
    assert policy["kind"] == "NetworkPolicy"
    assert [o["kind"] for o in rest] == ["PodDisruptionBudget"]
    assert [o["kind"] for o in render(VARIANTS["single"])] == [
        "Deployment", "Service", "NetworkPolicy"]
    assert [o["kind"] for o in render(VARIANTS["autoscaled"])][-2:] == [
        "PodDisruptionBudget", "HorizontalPodAutoscaler"]


def test_a_terminating_pod_serves_until_the_endpoints_catch_up(tmp_path: Path) -> None:
    """Endpoint removal and SIGTERM happen at the same time (EKS Best Practices, "Gracefully
    handle the client requests"): a preStop sleep first, then SIGTERM and the service's
    30 s drain, all within the grace period; canary pods the same; podman, with no Service
    to catch up, stops at once."""
    spec = VARIANTS["replicated"]
    for manifest in (render(spec)[0], canary_deployment(spec)):
        pod = manifest["spec"]["template"]["spec"]
        hook = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        assert hook == ["sleep", str(PRESTOP_SECONDS)] and PRESTOP_SECONDS >= 10
        assert pod["terminationGracePeriodSeconds"] > PRESTOP_SECONDS + 30  # slack after the drain
    played = podman_manifest(spec, 18080, tmp_path)["spec"]["template"]["spec"]
    assert "lifecycle" not in played["containers"][0]


def test_manifests_command_prints_what_the_driver_applies(capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    assert cli_main(["manifests", "iris", "--image", IMAGE, "--replicas", "3",
                     "--deployment-id", "d-9"]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    # the auth Secret the Deployment mounts first (open unless --auth token), then the rest
    secret, *objects = printed
    assert objects == render(VARIANTS["replicated"])
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "iris-auth"
    assert base64.b64decode(secret["data"]["auth"]).decode() == "none\n"
    assert cli_main(["manifests", "iris", "--image", IMAGE, "--auth", "token"]) == 0
    out = capsys.readouterr()
    token = out.err.strip().rsplit(" ", 1)[1]
    text = base64.b64decode(next(yaml.safe_load_all(out.out))["data"]["auth"]).decode()
    assert token.startswith("tsk_") and token not in text
    assert auth.allows(auth.parse(text), token, 0) and auth.delivered(auth.parse(text))


def test_manifests_command_refuses_bad_autoscaling(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["manifests", "iris", "--image", IMAGE, "--replicas", "3",
                     "--max-replicas", "2"]) == 2
    assert "below replicas" in capsys.readouterr().err


def test_load_balancer_is_internet_facing_by_default() -> None:
    """The AWS Load Balancer Controller (v2.2+, the default for new LoadBalancer Services
    from v2.5 through its webhook) and EKS Auto Mode make an internal NLB unless the scheme
    annotation says internet-facing: without it the inference URL answers only inside the
    VPC."""
    service = render(VARIANTS["single"])[1]
    annotations = service["metadata"]["annotations"]
    assert annotations[LB_SCHEME_ANNOTATION] == "internet-facing"
    # the in-tree controller is internet-facing by default; "false" would also do, but
    # EKS Auto Mode does not support that annotation, so it is only sent for internal
    assert LB_INTERNAL_ANNOTATION not in annotations
    assert "loadBalancerSourceRanges" not in service["spec"]
    assert "loadBalancerClass" not in service["spec"]  # the controller's to set, once


def test_internal_load_balancer_with_source_ranges() -> None:
    service = render(VARIANTS["internal-arm"])[1]
    annotations = service["metadata"]["annotations"]
    assert annotations[LB_SCHEME_ANNOTATION] == "internal"
    assert annotations[LB_INTERNAL_ANNOTATION] == "true"  # what the in-tree controller reads
    assert service["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8", "192.168.1.0/24"]
    assert annotations["trainship.io/model-version"] == "3"  # the model's own stay


def test_cluster_ip_service_has_no_load_balancer_settings() -> None:
    service = render(VARIANTS["autoscaled"])[1]
    assert not any(k.startswith("service.beta.kubernetes.io/")
                   for k in service["metadata"]["annotations"])
    assert "loadBalancerSourceRanges" not in service["spec"]


def test_pods_are_pinned_to_the_image_architecture() -> None:
    for name, arch in (("single", "amd64"), ("internal-arm", "arm64")):
        pod = render(VARIANTS[name])[0]["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"kubernetes.io/arch": arch}


@pytest.mark.parametrize("change, message", [
    ({"lb_scheme": "public"}, "load balancer scheme"),
    ({"lb_source_ranges": ["10.0.0.1/8"]}, "not a CIDR block"),
    ({"lb_source_ranges": ["everywhere"]}, "not a CIDR block"),
    ({"arch": "x86_64"}, "cluster architecture"),
    ({"lb_certificate_arn": "arn:aws:iam::111122223333:server-certificate/x"}, "ACM"),
    ({"lb_certificate_arn": "my-cert"}, "ACM"),
    ({"lb_certificate_arn": CERTIFICATE, "service_type": "ClusterIP"}, "LoadBalancer"),
])
def test_bad_cluster_settings_are_refused(change: dict[str, object], message: str) -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match=message):
        render(replace(VARIANTS["single"], **change))  # type: ignore[arg-type]


def test_source_ranges_setting_is_a_comma_list() -> None:
    assert source_ranges("") == []
    assert source_ranges(" 10.0.0.0/8, 203.0.113.0/24 ,") == ["10.0.0.0/8", "203.0.113.0/24"]


def test_pods_read_the_model_auth_secret_mounted_as_a_directory() -> None:
    """The kubelet refreshes a Secret volume in running pods, never a subPath mount of it:
    a rotated token reaches the pods only through a directory mount."""
    spec = VARIANTS["registered-name"]
    pod = render(spec)[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env[AUTH_FILE_ENV] == AUTH_FILE == f"{AUTH_DIR}/auth"
    # the path the inference service reads (its own settings, not a copy of them)
    assert ServingSettings.from_env(env).auth_file == Path(AUTH_FILE)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == AUTH_DIR)
    assert mount["readOnly"] is True and "subPath" not in mount
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "test-model-v2-auth"
    assert not volume["secret"].get("optional")  # DeployModel writes it before the pods


def test_the_auth_secret_holds_the_file_and_is_labelled_like_the_model() -> None:
    import base64

    spec = VARIANTS["registered-name"]
    secret = auth_secret(spec.model_name, "ml", AUTH_TEXT)
    assert secret["metadata"]["name"] == "test-model-v2-auth"
    assert secret["metadata"]["namespace"] == "ml"
    labels = secret["metadata"]["labels"]
    # what a delete selects the model's objects by (kubernetes.KubernetesDriver.remove)
    assert labels["app.kubernetes.io/instance"] == "test-model-v2"
    assert labels["app.kubernetes.io/managed-by"] == "trainship"
    assert "app.kubernetes.io/version" not in labels  # auth is per model, not per version
    assert base64.b64decode(secret["data"]["auth"]).decode() == AUTH_TEXT
    assert "tsk_x" not in str(secret)  # digests only


def _with_address(service: dict[str, object]) -> dict[str, object]:
    return {**service, "status": {"loadBalancer": {"ingress": [{"hostname": "a1.elb.example"}]}}}


def test_without_a_certificate_the_load_balancer_is_plain_http_on_80() -> None:
    service = render(VARIANTS["single"])[1]
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http",
                                         "protocol": "TCP"}]
    annotations = service["metadata"]["annotations"]
    assert LB_SSL_CERT_ANNOTATION not in annotations
    assert LB_SSL_PORTS_ANNOTATION not in annotations
    assert service_url(_with_address(service)) == "http://a1.elb.example"


def test_a_certificate_gives_https_on_443_only() -> None:
    """TLS ends at the load balancer (the AWS Load Balancer Controller's ssl-cert and
    ssl-ports annotations); no plain-HTTP port is left; the inference URL is https://."""
    service = render(VARIANTS["tls"])[1]
    annotations = service["metadata"]["annotations"]
    assert annotations[LB_SSL_CERT_ANNOTATION] == CERTIFICATE
    assert annotations[LB_SSL_PORTS_ANNOTATION] == "443"
    assert annotations[LB_SCHEME_ANNOTATION] == "internet-facing"
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "http",
                                         "protocol": "TCP"}]
    assert service_url(_with_address(service)) == "https://a1.elb.example"
    assert service_url(service) == ""  # no address yet


def test_the_certificate_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINSHIP_LB_CERTIFICATE_ARN", raising=False)
    assert ClusterSettings.from_env().lb_certificate_arn == ""
    monkeypatch.setenv("TRAINSHIP_LB_CERTIFICATE_ARN", CERTIFICATE)
    settings = ClusterSettings.from_env()
    assert settings.lb_certificate_arn == CERTIFICATE
    # the kubernetes driver renders every model's Service with it
    driver = KubernetesDriver(None, settings)  # type: ignore[arg-type]  # no API call
    assert driver.spec(VARIANTS["single"]).lb_certificate_arn == CERTIFICATE
