"""Each cluster driver's ``remove(model_name)`` (a delete): the process driver for real (a
served version and the model's real front), the kubernetes driver against the HTTP fake
(tests/unit/fake_kube.py), the podman driver's records with podman's commands recorded."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fake_kube import spec
from trainship.cluster import front, podman
from trainship.cluster.handles import PodmanHandle, ProcessHandle
from trainship.cluster.podman import PodmanDriver
from trainship.cluster.process import ProcessDriver
from trainship.procs import free_port, pid_alive


def answers(url: str) -> int | str:
    """The HTTP status, or why nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError as exc:
        return "connection refused" if isinstance(exc.reason, ConnectionRefusedError) \
            else str(exc.reason)


def wait_until(check: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not check():
        time.sleep(0.05)


# --- process -----------------------------------------------------------------------------

def test_process_remove_stops_the_versions_and_the_front(tmp_path: Path) -> None:
    driver = ProcessDriver(tmp_path)
    directory = tmp_path / "test-model"
    port = free_port()
    server = subprocess.Popen(  # a version's server: a tiny HTTP server in its own group
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(tmp_path)], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = front.ensure(directory, "test_model")["url"]
        front.point(directory, port)
        record: ProcessHandle = {
            "model_name": "test_model", "serving_name": "test-model", "version": "1",
            "image_uri": "bundle@sha256:0", "deployment_id": "d-1", "port": port, "url": url,
            "test_url": f"http://127.0.0.1:{port}", "state": "serving", "pid": server.pid,
            "log": str(directory / "v1.log"), "requirements": []}
        driver._save(record)
        (directory / ".lock").touch()
        wait_until(lambda: answers(url) == 200)
        assert answers(url) == 200

        removed = driver.remove("test_model")

        assert removed[0].startswith(f"process {server.pid}: test_model v1 on port {port}")
        assert removed[1].startswith(f"front {url} ") and len(removed) == 2
        assert answers(url) == "connection refused"  # the front's port is closed
        assert server.wait(timeout=10) is not None and not pid_alive(server.pid)
        assert driver.records("test_model") == []
        assert sorted(p.name for p in directory.iterdir()) == [".lock"]
        assert driver.remove("test_model") == []  # idempotent: nothing left to remove
    finally:
        if server.poll() is None:
            server.kill()
        front.stop(directory)


def test_process_remove_leaves_other_models_alone(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    stopped: list[int] = []
    monkeypatch.setattr("trainship.cluster.process.stop_pid", stopped.append)
    monkeypatch.setattr("trainship.cluster.process.pid_alive", lambda pid: True)
    driver = ProcessDriver(tmp_path)
    for name, pid in (("iris", 11), ("iris_2", 12)):
        (tmp_path / name.replace("_", "-")).mkdir()
        driver._save({"model_name": name, "serving_name": name.replace("_", "-"),
                      "version": "1", "image_uri": "b", "deployment_id": "d", "port": 1,
                      "url": "u", "test_url": "t", "state": "serving", "pid": pid, "log": "l",
                      "requirements": []})
    driver.remove("iris")
    assert stopped == [11]
    assert [r["model_name"] for r in driver.records()] == ["iris_2"]


# --- kubernetes ----------------------------------------------------------------------------

def test_kubernetes_remove_deletes_every_object_of_the_model_by_label(kube: Any) -> None:
    fake, driver = kube
    driver.apply(spec("1", replicas=2, max_replicas=4))  # + PodDisruptionBudget, HPA
    other = spec("1")
    driver.apply(type(other)(**{**other.__dict__, "model_name": "iris_2"}))
    before = {key for key in fake.objects if key[2] == "iris"}
    assert {kind for kind, _, _ in before} == {
        "Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget",
        "HorizontalPodAutoscaler"}

    removed = driver.remove("iris")

    assert removed == [f"{kind}/iris in namespace trainship" for kind in (
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Service",
        "Deployment")]
    assert not [key for key in fake.objects if key[2] == "iris"]
    assert {key[2] for key in fake.objects} == {"iris-2"}  # another model stays
    lists = [c for c in fake.calls if c.method == "GET" and c.query.get("labelSelector")]
    assert lists and all(c.query["labelSelector"] == [
        "app.kubernetes.io/instance=iris,app.kubernetes.io/managed-by=trainship"]
        for c in lists)
    assert driver.remove("iris") == []  # idempotent


def test_kubernetes_remove_waits_for_the_load_balancer_services_finalizer(kube: Any) -> None:
    """A LoadBalancer Service is deleted only once its load balancer is: remove() returns
    when the Service is gone, so a deployment right after a delete does not patch a
    terminating Service that then disappears under it."""
    fake, driver = kube
    driver.apply(spec("1"))
    fake.service_finalizer_gets = 3
    waits: list[float] = []
    driver.sleep = waits.append
    driver.remove("iris")
    assert ("Service", "trainship", "iris") not in fake.objects
    assert len(waits) >= 2  # it waited while the Service was terminating


def test_kubernetes_remove_that_outlasts_its_wait_is_transient(kube: Any) -> None:
    from trainship.errors import TransientError

    fake, driver = kube
    driver.apply(spec("1"))
    fake.service_finalizer_gets = 10_000  # the load balancer is never released
    now = [0.0]
    driver.sleep = lambda seconds: now.__setitem__(0, now[0] + seconds)
    driver.clock = lambda: now[0]
    with pytest.raises(TransientError, match="still being deleted"):
        driver.remove("iris")
    assert now[0] <= 200  # within REMOVE_WAIT_SECONDS, inside RemoveModel's 300 s


def test_kubernetes_remove_refused_is_removal_failed(kube: Any) -> None:
    from trainship.errors import RemovalFailed

    fake, driver = kube
    driver.apply(spec("1"))
    original = fake.handle

    def forbid_delete(call: Any) -> tuple[int, Any]:
        if call.method == "DELETE":
            return 403, {"kind": "Status", "code": 403, "message": "forbidden"}
        return original(call)

    fake.handle = forbid_delete
    with pytest.raises(RemovalFailed) as caught:
        driver.remove("iris")
    assert "403" in caught.value.message and caught.value.step == "RemoveModel"


# --- podman ----------------------------------------------------------------------------------

def test_podman_remove_removes_each_pod_and_the_proxy(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[tuple[str, ...]] = []
    monkeypatch.setattr(podman.containers, "podman",
                        lambda home, *args, **kw: commands.append(args)
                        or subprocess.CompletedProcess(args, 0, "", ""))
    stopped: list[Path] = []
    monkeypatch.setattr(podman.front, "stop", stopped.append)
    driver = PodmanDriver(tmp_path / "podman")
    directory = tmp_path / "podman" / "test-model"
    directory.mkdir(parents=True)
    (directory / "service.json").write_text(
        '{"port": 1234, "pid": 99, "url": "http://127.0.0.1:1234"}')
    for version, state in (("1", "serving"), ("2", "starting")):
        record: PodmanHandle = {
            "model_name": "test_model", "serving_name": "test-model", "version": version,
            "image_uri": "i", "deployment_id": "d", "pod": podman.pod_name("test_model", version),
            "port": 1, "url": "http://127.0.0.1:1234", "test_url": "t",
            "manifest": str(directory / f"v{version}.yaml"), "state": state}
        driver._save(record)
        (directory / f"v{version}.yaml").write_text("{}")

    removed = driver.remove("test_model")

    assert commands == [("pod", "rm", "--force", "test-model-v1-pod-0"),
                        ("pod", "rm", "--force", "test-model-v2-pod-0")]
    assert stopped == [directory]
    assert removed[-1] == "proxy http://127.0.0.1:1234 (process 99)"
    assert driver.records("test_model") == [] and not list(directory.iterdir())
    commands.clear()
    assert driver.remove("test_model") == [] and commands == []
