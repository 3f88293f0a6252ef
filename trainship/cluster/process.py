"""The ``process`` cluster driver: each model version is served by a local process.

The image bundle (see trainship.image) holds the model; the service runs with the python
of the model's requirements environment (the one training used), on a port of its own.
The model's URL is its front (trainship.cluster.front, the proxy podman mode uses too) on a
port kept for the model: promotion points the front at the new version, so the URL never
changes, and a retired version is stopped once the front has drained it. Records of what
serves live in ``<home>/serving/<serving name>/`` (trainship.names): ``v<version>.json``
per version and the front's files (``service.json`` holds its port), so that
``trainship local down`` stops every server and a restart serves the same URLs again.
Each model's auth file (trainship.cluster.local_auth) is ``<home>/serving/.auth/<serving
name>/auth``; every version started reads it (TRAINSHIP_SERVING_AUTH_FILE).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

from trainship.bundles import resolve_bundle
from trainship.cluster import (
    AUTH_FILE_ENV,
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
from trainship.cluster.handles import ProcessHandle, RecordState, read
from trainship.cluster.manifests import WorkloadSpec, serving_args
from trainship.config import ServingOptions
from trainship.envs import prepare_environment
from trainship.errors import tail
from trainship.names import serving_name
from trainship.procs import file_lock, free_port, library_path, pid_alive, stop_pid
from trainship.state import Handle

# the local stack's python3 shim in its home (trainship.local.warm.write_shim)
WARM_SHIM = Path("warm") / "bin" / "python3"


class ProcessDriver(local_auth.LocalAuthFiles):
    def __init__(self, root: Path, serving: ServingOptions | None = None) -> None:
        self.root = root
        self.serving = serving or ServingOptions()

    def _dir(self, model_name: str) -> Path:
        return self.root / serving_name(model_name)

    def _record_path(self, model_name: str, version: str) -> Path:
        return self._dir(model_name) / f"v{version}.json"

    def records(self, model_name: str | None = None) -> list[ProcessHandle]:
        pattern = f"{serving_name(model_name)}/v*.json" if model_name else "*/v*.json"
        return [_record(p.read_text()) for p in sorted(self.root.glob(pattern))]

    def _save(self, record: ProcessHandle) -> None:
        self._record_path(record["model_name"], record["version"]).write_text(
            json.dumps(record, indent=2))

    def apply(self, spec: WorkloadSpec) -> Applied:
        """The new version on a port of its own, beside the live one: the front keeps
        sending every request to the live version until ``set_traffic`` (a canary) or
        ``promote`` changes its target, with or without ``spec.canary``."""
        live = live_by_records(spec.version, self.records(spec.model_name))
        return replace(self._start(spec, port=free_port(), state="starting"),
                       live_version=live)

    def _start(self, spec: WorkloadSpec, *, port: int, state: RecordState,
               auth: bool = True) -> Applied:
        """The version's server on ``port``, behind the model's front (started if need be),
        reading the model's auth file (``auth``; a restored version deployed before auth
        files existed has none and serves as it did)."""
        spec = replace(spec, workers=self.serving.workers,
                       max_batch_rows=self.serving.max_batch_rows,
                       max_wait_ms=self.serving.max_wait_ms)
        bundle = resolve_bundle(spec.image_uri)
        python = prepare_environment(spec.requirements, self.root.parent / "envs")
        warm = self.root.parent / WARM_SHIM
        if python == sys.executable and warm.exists():
            # the local stack's warm interpreter (trainship.local.warm) has imported MLflow
            # and the service already: the server answers seconds sooner. It runs the real
            # interpreter when the warm one is not there.
            python = str(warm)
        log = self._dir(spec.model_name) / f"v{spec.version}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [python, "-m", "trainship.serving", "--model-dir", str(bundle / "model"),
                 "--load-cache", str(self.root / "load-cache" / f"{bundle.name}.pkl"),
                 "--host", "127.0.0.1", "--port", str(port), *serving_args(spec),
                 *(["--debug"] if spec.debug else [])],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                # what the pod's env names too (manifests.deployment): trainship_model_info
                env={**_without_auth(os.environ), "PYTHONPATH": library_path(),
                     "TRAINSHIP_MODEL_NAME": spec.model_name,
                     "TRAINSHIP_MODEL_VERSION": spec.version,
                     **({AUTH_FILE_ENV: str(local_auth.auth_path(self.root, spec.model_name))}
                        if auth else {})})
        url = front.ensure(self._dir(spec.model_name), spec.model_name)["url"]
        handle: ProcessHandle = {
            "model_name": spec.model_name, "serving_name": spec.serving_name,
            "version": spec.version, "pid": proc.pid, "port": port, "url": url,
            "test_url": f"http://127.0.0.1:{port}", "log": str(log),
            "image_uri": spec.image_uri, "deployment_id": spec.deployment_id,
            "requirements": spec.requirements, "state": state, "debug": spec.debug}
        self._save(handle)
        return Applied(inference_url=url, handle=handle, test_url=handle["test_url"])

    def status(self, handle: Handle) -> RolloutStatus:
        return self._status(read(ProcessHandle, handle))

    def _status(self, handle: ProcessHandle) -> RolloutStatus:
        log_tail = tail(Path(handle["log"]).read_text(errors="replace"), 30) \
            if Path(handle["log"]).exists() else ""
        if not pid_alive(handle["pid"]):
            return RolloutStatus(ready=False, failed=True,
                                 message=f"the inference server for {handle['model_name']} "
                                         f"v{handle['version']} exited", details=log_tail)
        try:
            with urllib.request.urlopen(f"{handle['test_url']}/ping", timeout=2) as response:
                ready = response.status == 200
        except (urllib.error.URLError, OSError):
            ready = False
        return RolloutStatus(ready=ready, inference_url=handle["url"],
                             message="ready" if ready else "starting", details=log_tail)

    def invoke(self, handle: Handle, path: str, payload: Any, *, timeout: float,
               headers: dict[str, str] | None = None) -> Answer | None:
        """The version's own port, before the model's front points at it."""
        return post_json(f"{read(ProcessHandle, handle)['test_url']}{path}", payload,
                         timeout=timeout, headers=headers)

    def lock(self, model_name: str) -> AbstractContextManager[None]:
        return file_lock(self._dir(model_name) / ".lock")

    def promote(self, handle: Handle, *, replace_higher: bool = False) -> str | None:
        mine = read(ProcessHandle, handle)
        return promote_by_records(mine, self.records(mine["model_name"]),
                                  go_live=self._go_live, retire=self._retire,
                                  discard=self._stop, replace_higher=replace_higher)

    def _go_live(self, handle: ProcessHandle) -> None:
        """The front sends new connections to this version from now on."""
        front.point(self._dir(handle["model_name"]), handle["port"])
        self._save({**handle, "state": "serving"})

    def _retire(self, record: ProcessHandle) -> None:
        """A lower version after a higher one went live: stopped once the front relays no
        connection to it any more (or after the grace period)."""
        front.drain(self._dir(record["model_name"]), record["port"])
        self._stop(record)

    def set_traffic(self, handle: Handle, percent: int) -> int:
        """The front shares requests between the live version and this one, by weight
        (trainship.cluster.weighted: per request, smooth weighted round-robin): exactly
        ``percent``."""
        mine = read(ProcessHandle, handle)
        return front.split(self._dir(mine["model_name"]), mine,
                           self.records(mine["model_name"]), percent)

    def scrape(self, model_name: str) -> dict[str, dict[str, str]]:
        """Each version's /metrics on its own port, keyed by its process id."""
        return scrape_records(self.records(model_name), key=lambda r: str(r["pid"]))

    def discard(self, handle: Handle) -> None:
        """A version the front shares traffic with (a canary) is taken out of the share and
        drained first; one that never had traffic is stopped at once."""
        mine = read(ProcessHandle, handle)
        front.withdraw(self._dir(mine["model_name"]), mine["port"])
        self._stop(mine)

    def _stop(self, record: ProcessHandle) -> None:
        stop_pid(record["pid"])
        self._record_path(record["model_name"], record["version"]).unlink(missing_ok=True)

    def remove(self, model_name: str) -> list[str]:
        """Take the model out of service (a delete): stop every version's server and the
        model's front, and drop their records and logs, so that its URL stops answering
        (connection refused) and a restart serves nothing of it. The lock file stays (the
        caller holds it). What was removed; nothing when nothing served."""
        directory = self.root / serving_name(model_name)
        removed = []
        for record in self.records(model_name):
            running = pid_alive(record["pid"])
            if running:
                stop_pid(record["pid"])
            self._record_path(model_name, record["version"]).unlink(missing_ok=True)
            removed.append(f"process {record['pid']}: {model_name} v{record['version']} on "
                           f"port {record['port']} ({record['state']}"
                           f"{'' if running else ', had exited'})")
        known = front.record(directory)
        if known is not None:
            running = pid_alive(known["pid"])
            front.stop(directory)
            removed.append(f"front {known['url']} (process {known['pid']}"
                           f"{'' if running else ', had exited'})")
        if directory.is_dir():
            for path in directory.iterdir():
                if path.name != ".lock" and path.is_file():
                    path.unlink(missing_ok=True)
        if local_auth.remove(self.root, model_name):
            removed.append(f"auth file of {model_name}")
        return removed

    def restore(self) -> list[str]:
        """After a restart: serve again what served before, on the same ports (the front's
        and the version's); wait for it."""
        restored: list[Applied] = []
        for record in self.records():
            if record["state"] != "serving":
                continue
            if pid_alive(record["pid"]):
                front.ensure(self._dir(record["model_name"]), record["model_name"])
                continue
            applied = self._start(WorkloadSpec(
                model_name=record["model_name"], version=record["version"],
                image_uri=record["image_uri"], deployment_id=record["deployment_id"],
                requirements=record["requirements"], debug=record.get("debug", False)),
                port=record["port"], state="serving",
                auth=local_auth.read(self.root, record["model_name"]) is not None)
            front.point(self._dir(record["model_name"]), record["port"])
            restored.append(applied)
        deadline = time.monotonic() + 120
        for applied in restored:
            while time.monotonic() < deadline and not self.status(applied.handle).ready \
                    and not self.status(applied.handle).failed:
                time.sleep(0.3)
        return [applied.inference_url for applied in restored]

    def stop_all(self) -> int:
        """Stop every version's server and every model's front: the servers stopped."""
        count = 0
        for record in self.records():
            if pid_alive(record["pid"]):
                stop_pid(record["pid"])
                count += 1
        for path in self.root.glob("*/service.json"):
            front.stop(path.parent)
        return count


def _without_auth(environ: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    """The stack's environment minus an auth file it may name (each version gets its own
    model's, or none)."""
    return {k: v for k, v in environ.items() if k != AUTH_FILE_ENV}


def _record(text: str) -> ProcessHandle:
    """A record file; one written before process mode had a front (its URL was the
    version's own) gets that as its test URL."""
    data = json.loads(text)
    data.setdefault("test_url", data.get("url", ""))
    return read(ProcessHandle, data)

