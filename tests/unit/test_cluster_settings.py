"""The cluster drivers' settings (trainship.config.ClusterSettings) and how they reach what
serves: the serving knobs as the inference service's arguments, in a pod and in a process;
and the typed handles a driver reads back (trainship.cluster.handles)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.helpers import handle
from tests.unit.fake_kube import FakeKube, fake_cluster, spec
from trainship.cluster import drivers
from trainship.cluster.handles import KubernetesHandle, ProcessHandle, read
from trainship.cluster.kubernetes import KubernetesDriver
from trainship.cluster.manifests import deployment, serving_args
from trainship.cluster.process import ProcessDriver
from trainship.config import ClusterSettings, ServingOptions, Settings

CLUSTER_VARIABLES = ("TRAINSHIP_NAMESPACE", "TRAINSHIP_SERVICE_TYPE", "TRAINSHIP_LB_SCHEME",
                     "TRAINSHIP_LB_SOURCE_RANGES", "TRAINSHIP_LB_CERTIFICATE_ARN",
                     "TRAINSHIP_CLUSTER_ARCH",
                     "TRAINSHIP_EKS_CLUSTER", "TRAINSHIP_KUBE_CONTEXT", "AWS_REGION",
                     "AWS_DEFAULT_REGION", "TRAINSHIP_SERVING_WORKERS",
                     "TRAINSHIP_MAX_BATCH_ROWS", "TRAINSHIP_MAX_WAIT_MS")


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in CLUSTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_settings_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    assert ClusterSettings.from_env() == ClusterSettings()
    for name, value in [("TRAINSHIP_NAMESPACE", "models"), ("TRAINSHIP_SERVICE_TYPE", "ClusterIP"),
                        ("TRAINSHIP_LB_SCHEME", "internal"),
                        ("TRAINSHIP_LB_SOURCE_RANGES", "10.0.0.0/8, 172.16.0.0/12"),
                        ("TRAINSHIP_LB_CERTIFICATE_ARN", "arn:aws:acm:eu-west-1:1:certificate/c"),
                        ("TRAINSHIP_CLUSTER_ARCH", "arm64"), ("TRAINSHIP_EKS_CLUSTER", "prod"),
                        ("TRAINSHIP_KUBE_CONTEXT", "kind"), ("AWS_DEFAULT_REGION", "eu-west-1"),
                        ("TRAINSHIP_SERVING_WORKERS", "4"), ("TRAINSHIP_MAX_BATCH_ROWS", "64"),
                        ("TRAINSHIP_MAX_WAIT_MS", "0.5")]:
        clean_env.setenv(name, value)
    assert ClusterSettings.from_env() == ClusterSettings(
        namespace="models", service_type="ClusterIP", lb_scheme="internal",
        lb_source_ranges=("10.0.0.0/8", "172.16.0.0/12"),
        lb_certificate_arn="arn:aws:acm:eu-west-1:1:certificate/c", arch="arm64",
        eks_cluster="prod", kube_context="kind", region="eu-west-1",
        serving=ServingOptions(workers=4, max_batch_rows=64, max_wait_ms=0.5))
    clean_env.setenv("AWS_REGION", "us-east-2")  # Lambda's own variable wins
    assert ClusterSettings.from_env().region == "us-east-2"


def test_empty_values_are_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    for name in CLUSTER_VARIABLES:
        clean_env.setenv(name, "")
    assert ClusterSettings.from_env() == ClusterSettings()


@pytest.mark.parametrize("name, value", [("TRAINSHIP_SERVING_WORKERS", "0"),
                                         ("TRAINSHIP_MAX_BATCH_ROWS", "0"),
                                         ("TRAINSHIP_MAX_WAIT_MS", "-1")])
def test_serving_knobs_out_of_range_are_refused_naming_the_variable(
        clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        ClusterSettings.from_env()


def test_serving_args_leave_unset_knobs_to_the_service() -> None:
    assert serving_args(spec("1")) == ["--workers", "1"]
    assert serving_args(spec("1", workers=3, max_batch_rows=1, max_wait_ms=2.0)) == [
        "--workers", "3", "--max-batch-rows", "1", "--max-wait-ms", "2"]
    container = deployment(spec("1", max_wait_ms=0.25))["spec"]["template"]["spec"][
        "containers"][0]
    assert container["args"] == ["--port", "8080", "--workers", "1", "--max-wait-ms", "0.25"]
    # never rounded to six digits
    assert serving_args(spec("1", max_wait_ms=1234567.5))[-1] == "1234567.5"


@pytest.fixture()
def kube() -> Iterator[tuple[FakeKube, KubernetesDriver]]:
    with fake_cluster(ClusterSettings(serving=ServingOptions(
            workers=4, max_batch_rows=32, max_wait_ms=5))) as pair:
        yield pair


def test_the_kubernetes_driver_gives_the_pods_its_serving_settings(kube) -> None:
    fake, driver = kube
    applied = driver.apply(spec("1"))
    container = fake.objects[("Deployment", "trainship", "iris")]["spec"]["template"]["spec"][
        "containers"][0]
    assert container["args"] == ["--port", "8080", "--workers", "4", "--max-batch-rows", "32",
                                 "--max-wait-ms", "5"]
    previous = driver.apply(spec("2")).handle
    assert read(KubernetesHandle, previous)["previous"]["workers"] == 4  # the rollback too
    assert read(KubernetesHandle, applied.handle)["spec"]["max_batch_rows"] == 32


def test_the_process_driver_starts_the_service_with_its_serving_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        process_starts: list[list[str]]) -> None:
    started = process_starts
    driver = ProcessDriver(tmp_path / "serving", ServingOptions(workers=2, max_batch_rows=8))
    applied = driver.apply(spec("1"))
    # the model's URL is its front; the smoke test reaches the version on its own port
    assert applied.inference_url == "http://127.0.0.1:8080"
    assert applied.test_url == f"http://127.0.0.1:{applied.handle['port']}"  # type: ignore[typeddict-item]
    assert started[0][-6:-4] == ["--port", str(applied.handle["port"])]  # type: ignore[typeddict-item]
    assert started[0][-4:] == ["--workers", "2", "--max-batch-rows", "8"]
    record = driver.records("iris")
    assert record == [applied.handle] and record[0]["pid"] == 4242
    assert record[0]["state"] == "starting"


def test_drivers_are_built_with_the_settings_given(tmp_path: Path) -> None:
    settings = Settings.from_env()
    settings = Settings(**{**settings.__dict__, "home": tmp_path})
    built = drivers.driver_from_settings(settings, "process",
                                         ClusterSettings(serving=ServingOptions(workers=3)))
    assert isinstance(built, ProcessDriver) and built.serving.workers == 3
    with pytest.raises(ValueError, match="unknown cluster driver 'nomad'"):
        drivers.driver_from_settings(settings, "nomad")


def test_a_driver_reads_back_only_its_own_handle() -> None:
    kubernetes_handle = {**handle("2"), "namespace": "trainship", "spec": {}}
    with pytest.raises(ValidationError) as raised:
        read(ProcessHandle, kubernetes_handle)
    assert "pid" in str(raised.value) and "port" in str(raised.value)
    kept = read(KubernetesHandle, {**kubernetes_handle, "note": "kept"})
    assert kept["namespace"] == "trainship" and kept["note"] == "kept"  # type: ignore[typeddict-item]
