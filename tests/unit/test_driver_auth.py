"""Each cluster driver keeps a model's auth file (trainship.auth) where every version of the
model reads it: read_auth/write_auth, TRAINSHIP_SERVING_AUTH_FILE in every workload, remove()
deleting it, and invoke(headers=...) reaching the version. The process driver's files for
real, the podman driver's manifest and podman's commands recorded, the kubernetes driver
against the HTTP fake (tests/unit/fake_kube.py)."""

from __future__ import annotations

import base64
import stat
import subprocess
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import LocalServer
from tests.unit.fake_kube import pod, spec
from trainship import auth
from trainship.cluster import AUTH_FILE_ENV, front, local_auth, podman, process
from trainship.cluster.kube_auth import AUTH_HELP
from trainship.cluster.manifests import AUTH_DIR, AUTH_FILE, AUTH_VOLUME, WorkloadSpec
from trainship.cluster.podman import PodmanDriver, podman_manifest
from trainship.cluster.process import ProcessDriver
from trainship.errors import RolloutFailed

TEXT = auth.render(auth.with_token(auth.AuthFile(), auth.digest("tsk_a"), pending=True))
OTHER = auth.render(auth.with_token(auth.AuthFile(), auth.digest("tsk_b"), pending=False))


# --- the local drivers' files ------------------------------------------------------------

@pytest.mark.parametrize("kind", [ProcessDriver, PodmanDriver])
def test_local_auth_files_are_written_by_rename_read_back_and_removed(
        tmp_path: Path, kind: Any) -> None:
    driver = kind(tmp_path / "serving")
    assert driver.read_auth("Test_Model") is None
    driver.write_auth("Test_Model", TEXT)
    path = tmp_path / "serving" / ".auth" / "test-model" / "auth"
    assert path.read_text() == TEXT and driver.read_auth("Test_Model") == TEXT
    inode = path.stat().st_ino
    driver.write_auth("Test_Model", OTHER)
    assert driver.read_auth("Test_Model") == OTHER
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert [p.name for p in path.parent.iterdir()] == ["auth"]  # no temporary left
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the container's user reads it
    assert driver.read_auth("iris") is None  # per model


def test_the_process_driver_points_every_version_at_its_model_auth_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[dict[str, str]] = []

    class Started:
        pid = 4242

    def popen(args: list[str], **kwargs: Any) -> Started:
        started.append(kwargs["env"])
        return Started()

    monkeypatch.setattr(process, "resolve_bundle", lambda uri: tmp_path / "bundle")
    monkeypatch.setattr(process, "prepare_environment", lambda reqs, root: "python3")
    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(front, "ensure", lambda directory, what: {
        "port": 8080, "pid": 4141, "url": "http://127.0.0.1:8080"})
    monkeypatch.setattr(front, "point", lambda directory, port: None)
    monkeypatch.setattr(process, "pid_alive", lambda pid: False)
    # a stack whose own environment names some other file: never inherited
    monkeypatch.setenv(AUTH_FILE_ENV, "/elsewhere/auth")
    driver = ProcessDriver(tmp_path / "serving")
    driver.write_auth("Test_Model", TEXT)
    applied = driver.apply(WorkloadSpec("Test_Model", "1", "bundle@sha256:0"))
    assert started[0][AUTH_FILE_ENV] == str(
        tmp_path / "serving" / ".auth" / "test-model" / "auth")
    # a restart serves it again with its auth file; a version of a model that never had one
    # (deployed before token auth) is restored as it served: without
    driver._save({**process.read(process.ProcessHandle, applied.handle), "state": "serving"})
    monkeypatch.setattr(driver, "status", lambda handle: process.RolloutStatus(ready=True,
                                                                               message=""))
    started.clear()
    driver.restore()
    assert started[0][AUTH_FILE_ENV].endswith("/.auth/test-model/auth")
    local_auth.remove(driver.root, "Test_Model")
    started.clear()
    driver.restore()
    assert AUTH_FILE_ENV not in started[0]


def test_the_process_driver_removes_the_auth_file_with_the_model(tmp_path: Path) -> None:
    driver = ProcessDriver(tmp_path / "serving")
    driver.write_auth("Test_Model", TEXT)
    driver.write_auth("iris", TEXT)
    assert driver.remove("Test_Model") == ["auth file of Test_Model"]
    assert driver.read_auth("Test_Model") is None
    assert not (tmp_path / "serving" / ".auth" / "test-model").exists()
    assert driver.read_auth("iris") == TEXT  # another model keeps its own
    assert driver.remove("Test_Model") == []


def test_local_invoke_sends_the_headers(tmp_path: Path) -> None:
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(dict(self.headers.items()))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = LocalServer(Handler)
    server.start()
    try:
        handle = {"model_name": "m", "serving_name": "m", "version": "1", "image_uri": "i",
                  "deployment_id": "d", "port": 1, "url": "u", "test_url": server.url,
                  "state": "starting", "pid": 1, "log": "l", "requirements": []}
        answer = ProcessDriver(tmp_path).invoke(handle, "/invocations", {"inputs": [1]},
                                                timeout=5,
                                                headers={"X-Trainship-Token": "tsk_s"})
        assert answer is not None and answer.status == 200
        handle = {**handle, "pod": "p", "manifest": "m"}
        PodmanDriver(tmp_path / "podman").invoke(handle, "/invocations", {}, timeout=5)
    finally:
        server.close()
    assert seen[0]["X-Trainship-Token"] == "tsk_s"
    assert seen[0]["Content-Type"] == "application/json"
    assert "X-Trainship-Token" not in seen[1]


# --- podman ----------------------------------------------------------------------------

def test_podman_mounts_the_model_auth_directory_read_only(tmp_path: Path) -> None:
    """A directory, not the file: a bind mount of a file keeps the inode it was mounted with,
    and write_auth replaces the file by a rename."""
    manifest = podman_manifest(WorkloadSpec("Test_Model", "2", "img"), 1234, tmp_path / "a")
    pod_spec = manifest["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert {e["name"]: e["value"] for e in container["env"]}[AUTH_FILE_ENV] == AUTH_FILE
    mount = next(m for m in container["volumeMounts"] if m["name"] == AUTH_VOLUME)
    assert mount == {"name": AUTH_VOLUME, "mountPath": AUTH_DIR, "readOnly": True}
    volume = next(v for v in pod_spec["volumes"] if v["name"] == AUTH_VOLUME)
    assert volume == {"name": AUTH_VOLUME,
                      "hostPath": {"path": str(tmp_path / "a"), "type": "Directory"}}
    assert [v["name"] for v in pod_spec["volumes"]] == ["tmp", AUTH_VOLUME]


def test_podman_apply_plays_the_manifest_with_the_auth_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[tuple[str, ...]] = []
    monkeypatch.setattr(podman.containers, "podman",
                        lambda home, *args, **kw: commands.append(args)
                        or subprocess.CompletedProcess(args, 0, "", ""))
    monkeypatch.setattr(podman.containers, "require_tools", lambda: None)
    monkeypatch.setattr(front, "ensure", lambda directory, what: {
        "port": 8080, "pid": 4141, "url": "http://127.0.0.1:8080"})
    driver = PodmanDriver(tmp_path / "podman")
    driver.write_auth("iris", TEXT)
    applied = driver.apply(WorkloadSpec("iris", "1", "img"))
    played = yaml.safe_load(Path(applied.handle["manifest"]).read_text())  # type: ignore[typeddict-item]
    volume = next(v for v in played["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == AUTH_VOLUME)
    directory = Path(volume["hostPath"]["path"])
    assert (directory / "auth").read_text() == TEXT
    assert commands[0][:3] == ("kube", "play", "--replace")
    assert "auth file of iris" in driver.remove("iris")
    assert not directory.exists()


# --- kubernetes ------------------------------------------------------------------------

def test_kubernetes_write_auth_applies_the_secret_in_a_namespace_it_creates(kube: Any) -> None:
    fake, driver = kube
    assert driver.read_auth("Test_Model") is None
    driver.write_auth("Test_Model", TEXT)
    assert "trainship" in fake.namespaces  # write_auth comes before the first apply
    secret = fake.objects[("Secret", "trainship", "test-model-auth")]
    assert base64.b64decode(secret["data"]["auth"]).decode() == TEXT
    assert secret["metadata"]["labels"]["app.kubernetes.io/instance"] == "test-model"
    writes = [c for c in fake.calls if c.method == "PATCH"]
    assert writes[0].path == "/api/v1/namespaces/trainship/secrets/test-model-auth"
    assert writes[0].content_type == "application/apply-patch+yaml"
    assert driver.read_auth("Test_Model") == TEXT
    driver.write_auth("Test_Model", OTHER)  # a rotation replaces the key
    assert driver.read_auth("Test_Model") == OTHER
    assert driver.read_auth("iris") is None


def test_kubernetes_remove_deletes_the_auth_secret_last(kube: Any) -> None:
    _, driver = kube
    driver.write_auth("iris", TEXT)
    driver.apply(spec("1"))
    removed = driver.remove("iris")
    assert removed[-2:] == ["Deployment/iris in namespace trainship",
                            "Secret/iris-auth in namespace trainship"]
    assert driver.read_auth("iris") is None


def test_kubernetes_auth_refused_is_rollout_failed_naming_secrets(kube: Any) -> None:
    fake, driver = kube
    fake.reject_kind = "Secret"
    with pytest.raises(RolloutFailed) as caught:
        driver.write_auth("iris", TEXT)
    assert "auth Secret of iris" in caught.value.message and "422" in caught.value.message
    assert caught.value.help == AUTH_HELP and "secrets" in AUTH_HELP


def test_kubernetes_invoke_sends_the_token_header_through_the_pod_proxy(kube: Any) -> None:
    fake, driver = kube
    applied = driver.apply(spec("1"))
    ready = pod("1")
    ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    fake.pods = [[ready]]
    answer = driver.invoke(applied.handle, "/invocations", {"inputs": [1]}, timeout=5,
                           headers={"X-Trainship-Token": "tsk_s"})
    assert answer is not None and answer.status == 200
    proxied = [c for c in fake.calls if "/proxy/" in c.path]
    assert proxied[-1].headers["X-Trainship-Token"] == "tsk_s"
    assert proxied[-1].headers["Content-Type"] == "application/json"
