"""Fixtures shared by unit test modules: the CLI tests' fake API and training script
(test_cli_*.py), the Kubernetes driver against a fake cluster (test_kubernetes_*.py),
the doctor's AWS environment and EKS cluster (test_doctor*.py), and a real MLflow registry
on sqlite (``registry_uri``: a fresh copy of an empty database per test)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit import asl_pipeline, doctor_fakes, fake_kube
from tests.unit.fake_api import SCRIPT, FakeApi
from trainship import doctor_eks
from trainship.cluster.kubernetes import KubernetesDriver


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


@pytest.fixture
def kube() -> Iterator[tuple[fake_kube.FakeKube, KubernetesDriver]]:
    """The Kubernetes driver against a fake API server."""
    with fake_kube.fake_cluster() as pair:
        yield pair


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The doctor's AWS environment (region, fake credentials); modules ask for it with
    ``pytestmark = pytest.mark.usefixtures("aws_env")``."""
    doctor_fakes.set_aws_env(monkeypatch)


@pytest.fixture
def eks() -> Iterator[tuple[fake_kube.FakeKube, list[dict[str, Any]], doctor_eks.KubeFactory]]:
    """A fake EKS cluster for the doctor: the namespace and a running load balancer
    controller."""
    with doctor_fakes.fake_cluster() as value:
        yield value


@pytest.fixture(scope="session")
def empty_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow database with its schema made once (MLflow's migrations take about a
    second): each test gets a fresh copy of it through ``registry_uri``."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("registry") / "mlflow.db"
    uri = f"sqlite:///{path}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()
    return path


@pytest.fixture()
def registry_uri(tmp_path: Path, empty_registry: Path) -> str:
    """The tracking and registry URI of this test's own empty MLflow database."""
    shutil.copyfile(empty_registry, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture()
def process_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The process driver with nothing started for real: each server's command line is
    recorded (pid 4242), the bundle and environment are taken as ready, the model's front
    is on port 8080."""
    import subprocess

    from trainship.cluster import front, process

    started: list[list[str]] = []

    class Started:
        pid = 4242

    def popen(args: list[str], **kwargs: Any) -> Started:
        started.append(args)
        return Started()

    monkeypatch.setattr(process, "resolve_bundle", lambda uri: tmp_path / "bundle")
    monkeypatch.setattr(process, "prepare_environment", lambda reqs, root: "python3")
    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(front, "ensure", lambda directory, what: {
        "port": 8080, "pid": 4141, "url": "http://127.0.0.1:8080"})
    return started


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch) -> Iterator[asl_pipeline.Pipeline]:
    """The ASL file on moto's interpreter, every Task a stand-in (tests/unit/asl_pipeline.py)."""
    yield from asl_pipeline.running_pipeline(monkeypatch)
