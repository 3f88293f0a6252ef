"""The ``podman`` cluster driver: the very Deployment manifest, played by ``podman kube play``.

Each model version runs as its own pod (the Deployment from ``manifests.deployment``,
named ``<serving name>-v<version>`` (trainship.names), its container port published on a
127.0.0.1 host port). The model's URL is a service proxy on a port kept for the model
(trainship.cluster.proxy, the local Service): it points at the live version only. So a new
version is played beside the old one, checked (podman ignores probes: the driver probes
/ping like a kubelet's readiness probe, and reads restarts and exit codes like
CheckRollout reads pod statuses), smoke-tested on its own port, and only then made live; a
version that crashes is removed and the previous one never stops answering at the same
URL.

Records live in ``<home>/podman/<serving name>/``: the front's files (trainship.cluster.front:
``service.json`` with the proxy's port and pid, ``target``, the live version's port) and
``v<version>.json`` per version. A retired version's pod is stopped once the proxy has
drained it (no connection relayed to it any more, or the grace period).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from trainship import containers
from trainship.cluster import (
    Answer,
    Applied,
    RolloutStatus,
    front,
    live_by_records,
    local_auth,
    post_json,
    promote_by_records,
    scrape_records,
)
from trainship.cluster.handles import FrontRecord, PodmanHandle, read, read_json
from trainship.cluster.manifests import AUTH_VOLUME, CONTAINER_NAME, WorkloadSpec, deployment
from trainship.config import ServingOptions
from trainship.names import serving_name
from trainship.procs import file_lock, free_port
from trainship.state import Handle


def pod_name(model_name: str, version: str) -> str:
    return f"{serving_name(model_name)}-v{version}-pod-0"


def container_name(model_name: str, version: str) -> str:
    return f"{pod_name(model_name, version)}-{CONTAINER_NAME}"


def podman_manifest(spec: WorkloadSpec, host_port: int, auth_dir: Path) -> dict[str, Any]:
    """The Kubernetes Deployment, as podman plays it: one pod per version, one replica,
    the container port published on 127.0.0.1 (podman has no Services). The nodeSelector
    stays: podman's "Podman Kube Play Support" lists it as N/A (single node) and ignores it.
    The auth Secret's volume is the model's auth directory on the host instead
    (``auth_dir``, trainship.cluster.local_auth), mounted read-only at the same path."""
    manifest = deployment(spec)
    manifest["metadata"]["name"] = f"{spec.serving_name}-v{spec.version}"
    manifest["metadata"].pop("namespace", None)
    manifest["spec"]["replicas"] = 1
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    container["ports"][0].update(hostPort=host_port, hostIP="127.0.0.1")
    # no Service, no load balancer to catch up with: podman stops the container at once
    container.pop("lifecycle", None)
    pod["volumes"] = [{"name": AUTH_VOLUME,
                       "hostPath": {"path": str(auth_dir), "type": "Directory"}}
                      if volume["name"] == AUTH_VOLUME else volume
                      for volume in pod["volumes"]]
    return manifest


class PodmanDriver(local_auth.LocalAuthFiles):
    def __init__(self, root: Path, serving: ServingOptions | None = None) -> None:
        self.root = root
        self.home = root.parent
        self.serving = serving or ServingOptions()

    # --- records ---------------------------------------------------------------------
    def _dir(self, model_name: str) -> Path:
        path = self.root / serving_name(model_name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _record_path(self, model_name: str, version: str) -> Path:
        return self._dir(model_name) / f"v{version}.json"

    def _save(self, handle: PodmanHandle) -> None:
        self._record_path(handle["model_name"], handle["version"]).write_text(
            json.dumps(handle, indent=2))

    def records(self, model_name: str | None = None) -> list[PodmanHandle]:
        pattern = f"{serving_name(model_name)}/v*.json" if model_name else "*/v*.json"
        return [read_json(PodmanHandle, p.read_text()) for p in sorted(self.root.glob(pattern))]

    def _podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return containers.podman(self.home, *args, check=check, timeout=600)

    # --- the Service ---------------------------------------------------------------------
    def service(self, model_name: str) -> FrontRecord:
        """The model's proxy: started unless it runs, on the port it always had."""
        return front.ensure(self._dir(model_name), model_name)

    # --- the driver interface ------------------------------------------------------------
    def apply(self, spec: WorkloadSpec) -> Applied:
        spec = replace(spec, workers=self.serving.workers,
                       max_batch_rows=self.serving.max_batch_rows,
                       max_wait_ms=self.serving.max_wait_ms)
        containers.require_tools()
        live = live_by_records(spec.version, self.records(spec.model_name))
        service = self.service(spec.model_name)
        host_port = free_port()
        manifest_path = self._dir(spec.model_name) / f"v{spec.version}.yaml"
        auth_dir = local_auth.auth_dir(self.root, spec.model_name)
        auth_dir.mkdir(parents=True, exist_ok=True)  # a hostPath Directory must exist
        manifest_path.write_text(yaml.safe_dump(podman_manifest(spec, host_port, auth_dir),
                                                sort_keys=False))
        handle: PodmanHandle = {
            "model_name": spec.model_name, "serving_name": spec.serving_name,
            "version": spec.version, "image_uri": spec.image_uri,
            "deployment_id": spec.deployment_id,
            "pod": pod_name(spec.model_name, spec.version), "port": host_port,
            "test_url": f"http://127.0.0.1:{host_port}", "url": service["url"],
            "manifest": str(manifest_path), "state": "starting"}
        tls = ["--tls-verify=false"] if spec.image_uri.startswith(("127.0.0.1:",
                                                                   "localhost:")) else []
        played = self._podman("kube", "play", "--replace", *tls, str(manifest_path),
                              check=False)
        if played.returncode != 0:
            handle["play_error"] = (played.stdout + played.stderr).strip()[-4000:]
        self._save(handle)
        # the proxy keeps pointing at the live version (canary or not) until set_traffic or
        # promote changes its target
        return Applied(inference_url=service["url"], handle=handle,
                       test_url=handle["test_url"], live_version=live)

    def _inspect(self, handle: PodmanHandle) -> dict[str, Any] | None:
        proc = self._podman("inspect", container_name(handle["model_name"], handle["version"]),
                            check=False)
        if proc.returncode != 0:
            return None
        data = json.loads(proc.stdout or "[]")
        return data[0] if data else None

    def logs(self, handle: PodmanHandle, lines: int = 30) -> str:
        proc = self._podman("logs", "--tail", str(lines),
                            container_name(handle["model_name"], handle["version"]), check=False)
        return (proc.stdout + proc.stderr).strip()

    def status(self, handle: Handle) -> RolloutStatus:
        return self._status(read(PodmanHandle, handle))

    def _status(self, handle: PodmanHandle) -> RolloutStatus:
        if handle.get("play_error"):
            error = handle["play_error"]
            reason = "ErrImagePull" if ("pull" in error.lower() or "manifest" in error.lower()) \
                else "CreateContainerError"
            return RolloutStatus(ready=False, failed=True, details=error,
                                 message=f"{reason}: podman kube play failed for "
                                         f"{handle['pod']}")
        info = self._inspect(handle)
        if info is None:
            return RolloutStatus(ready=False, failed=True,
                                 message=f"the container of {handle['pod']} does not exist")
        state = info.get("State") or {}
        restarts = int(info.get("RestartCount") or 0)
        if state.get("OOMKilled"):
            return RolloutStatus(ready=False, failed=True, details=self.logs(handle),
                                 message=f"pod {handle['pod']}: OOMKilled (the memory limit "
                                         "is too low for the model)")
        if restarts > 0 or state.get("Status") in ("exited", "stopped", "dead"):
            # podman resets ExitCode when it restarts the container: name it only when final
            exited = state.get("Status") in ("exited", "stopped", "dead")
            how = (f"exited with code {state.get('ExitCode')}" if exited
                   else f"keeps exiting (restarted {restarts} times)")
            return RolloutStatus(
                ready=False, failed=True, details=self.logs(handle),
                message=f"pod {handle['pod']}: "
                        f"{'CrashLoopBackOff' if restarts > 0 else 'Error'}: the container {how}")
        ready = _answers(f"{handle['test_url']}/ping")
        return RolloutStatus(ready=ready, inference_url=handle["url"],
                             message="ready" if ready else "starting (readiness: /ping)")

    def invoke(self, handle: Handle, path: str, payload: Any, *, timeout: float,
               headers: dict[str, str] | None = None) -> Answer | None:
        """The version's own published port, before the model's proxy points at it."""
        return post_json(f"{read(PodmanHandle, handle)['test_url']}{path}", payload,
                         timeout=timeout, headers=headers)

    def lock(self, model_name: str) -> AbstractContextManager[None]:
        return file_lock(self._dir(model_name) / ".lock")

    def promote(self, handle: Handle, *, replace_higher: bool = False) -> str | None:
        mine = read(PodmanHandle, handle)
        return promote_by_records(mine, self.records(mine["model_name"]),
                                  go_live=self._go_live, retire=self._retire,
                                  discard=self._remove, replace_higher=replace_higher)

    def _go_live(self, handle: PodmanHandle) -> None:
        """The Service now sends new connections to this version."""
        front.point(self._dir(handle["model_name"]), handle["port"])
        self._save({**handle, "state": "serving"})

    def _retire(self, record: PodmanHandle) -> None:
        """A lower version after a higher one went live: the proxy already sends new
        connections to the new one; the pod stops once the proxy relays nothing to it any
        more (``podman pod stop`` would cut the connections it still answers)."""
        front.drain(self._dir(record["model_name"]), record["port"])
        self._podman("pod", "stop", "--time", "10", record["pod"], check=False)
        self._remove(record)

    def _remove(self, record: PodmanHandle) -> None:
        self._podman("pod", "rm", "--force", record["pod"], check=False)
        self._record_path(record["model_name"], record["version"]).unlink(missing_ok=True)

    def set_traffic(self, handle: Handle, percent: int) -> int:
        """The front shares requests between the live version and this one, by weight
        (trainship.cluster.weighted: per request, smooth weighted round-robin): exactly
        ``percent``."""
        mine = read(PodmanHandle, handle)
        return front.split(self._dir(mine["model_name"]), mine,
                           self.records(mine["model_name"]), percent)

    def scrape(self, model_name: str) -> dict[str, dict[str, str]]:
        """Each version's /metrics on its own port, keyed by its pod name."""
        return scrape_records(self.records(model_name), key=lambda r: r["pod"])

    def discard(self, handle: Handle) -> None:
        """A version the front shares traffic with (a canary) is taken out of the share and
        drained first; one that never had traffic is stopped at once."""
        mine = read(PodmanHandle, handle)
        front.withdraw(self._dir(mine["model_name"]), mine["port"])
        self._remove(mine)

    def remove(self, model_name: str) -> list[str]:
        """Take the model out of service (a delete): remove every version's pod and stop the
        model's proxy (its URL then refuses connections), and drop their records and
        manifests. The lock file stays (the caller holds it). What was removed."""
        directory = self.root / serving_name(model_name)
        removed = []
        for record in self.records(model_name):
            self._podman("pod", "rm", "--force", record["pod"], check=False)
            self._record_path(model_name, record["version"]).unlink(missing_ok=True)
            removed.append(f"pod {record['pod']}: {model_name} v{record['version']} "
                           f"({record['state']})")
        known = front.record(directory)
        if known is not None:
            front.stop(directory)
            removed.append(f"proxy {known['url']} (process {known['pid']})")
        if directory.is_dir():
            for path in directory.iterdir():
                if path.name != ".lock" and path.is_file():
                    path.unlink(missing_ok=True)
        if local_auth.remove(self.root, model_name):
            removed.append(f"auth file of {model_name}")
        return removed

    # --- the local stack's restarts ------------------------------------------------------
    def stop_all(self) -> int:
        count = 0
        for record in self.records():
            self._podman("pod", "stop", "--time", "10", record["pod"], check=False)
            count += 1
        for path in self.root.glob("*/service.json"):
            front.stop(path.parent)
        return count

    def restore(self) -> list[str]:
        """After a restart: start the serving pods and their services on the same ports."""
        urls = []
        for record in self.records():
            if record["state"] != "serving":
                continue
            self._podman("pod", "start", record["pod"], check=False)
            urls.append(self.service(record["model_name"])["url"])
        deadline = time.monotonic() + 120
        for record in self.records():
            while record["state"] == "serving" and time.monotonic() < deadline \
                    and not _answers(f"{record['test_url']}/ping"):
                time.sleep(0.3)
        return urls


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, OSError):
        return False
