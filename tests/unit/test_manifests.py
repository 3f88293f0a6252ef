"""The manifests DeployModel applies: valid against the Kubernetes schemas (strict), clean
under checkov's Kubernetes checks, and carrying what the issue asks for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainship.cli import main as cli_main
from trainship.cluster.manifests import WorkloadSpec, render, to_yaml

REPO = Path(__file__).resolve().parents[2]
IMAGE = "127.0.0.1:5000/trainship-models:iris-v3@sha256:" + "a" * 64
VARIANTS = {
    "single": WorkloadSpec("iris", "3", IMAGE),
    "replicated": WorkloadSpec("iris", "3", IMAGE, replicas=3, deployment_id="d-9"),
    "autoscaled": WorkloadSpec("iris", "3", IMAGE, replicas=2, max_replicas=6,
                               service_type="ClusterIP", namespace="ml"),
}


@pytest.fixture(params=sorted(VARIANTS))
def manifest_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"{request.param}.yaml"
    path.write_text(to_yaml(render(VARIANTS[request.param])))
    return path


def test_strict_schema_validation(manifest_file: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict",
                           str(manifest_file)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed for resource deployment/iris" in proc.stdout + proc.stderr


def test_strict_validation_catches_a_bad_field(tmp_path: Path) -> None:
    objects = render(VARIANTS["single"])
    objects[0]["spec"]["template"]["spec"]["containers"][0]["imagePullPolisy"] = "Always"
    path = tmp_path / "bad.yaml"
    path.write_text(to_yaml(objects))
    proc = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "imagePullPolisy" in proc.stdout + proc.stderr


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


def test_manifests_command_prints_what_the_driver_applies(capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    assert cli_main(["manifests", "iris", "--image", IMAGE, "--replicas", "3",
                     "--deployment-id", "d-9"]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    assert printed == render(VARIANTS["replicated"])


def test_manifests_command_refuses_bad_autoscaling(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["manifests", "iris", "--image", IMAGE, "--replicas", "3",
                     "--max-replicas", "2"]) == 2
    assert "below replicas" in capsys.readouterr().err
