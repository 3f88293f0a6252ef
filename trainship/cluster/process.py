"""The ``process`` cluster driver: each model version is served by a local process.

The image bundle (see trainship.image) holds the model; the service runs with the python
of the model's requirements environment (the one training used). Records of what serves
live in ``<home>/serving/<serving name>/v<version>.json`` (trainship.names) so that
``trainship local down`` stops every server and a restart finds them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

from trainship.bundles import resolve_bundle
from trainship.cluster import Answer, Applied, RolloutStatus, post_json, promote_by_records
from trainship.cluster.handles import ProcessHandle, RecordState, read, read_json
from trainship.cluster.manifests import WorkloadSpec, serving_args
from trainship.config import ServingOptions
from trainship.envs import prepare_environment
from trainship.errors import tail
from trainship.names import serving_name
from trainship.procs import file_lock, free_port, library_path, pid_alive, stop_pid
from trainship.state import Handle


class ProcessDriver:
    def __init__(self, root: Path, serving: ServingOptions | None = None) -> None:
        self.root = root
        self.serving = serving or ServingOptions()

    def _dir(self, model_name: str) -> Path:
        return self.root / serving_name(model_name)

    def _record_path(self, model_name: str, version: str) -> Path:
        return self._dir(model_name) / f"v{version}.json"

    def records(self, model_name: str | None = None) -> list[ProcessHandle]:
        pattern = f"{serving_name(model_name)}/v*.json" if model_name else "*/v*.json"
        return [read_json(ProcessHandle, p.read_text()) for p in sorted(self.root.glob(pattern))]

    def _save(self, record: ProcessHandle) -> None:
        self._record_path(record["model_name"], record["version"]).write_text(
            json.dumps(record, indent=2))

    def apply(self, spec: WorkloadSpec) -> Applied:
        return self._start(spec, port=free_port(), state="starting")

    def _start(self, spec: WorkloadSpec, *, port: int, state: RecordState) -> Applied:
        spec = replace(spec, workers=self.serving.workers,
                       max_batch_rows=self.serving.max_batch_rows,
                       max_wait_ms=self.serving.max_wait_ms)
        bundle = resolve_bundle(spec.image_uri)
        python = prepare_environment(spec.requirements, self.root.parent / "envs")
        log = self._dir(spec.model_name) / f"v{spec.version}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [python, "-m", "trainship.serving", "--model-dir", str(bundle / "model"),
                 "--load-cache", str(self.root / "load-cache" / f"{bundle.name}.pkl"),
                 "--host", "127.0.0.1", "--port", str(port), *serving_args(spec)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONPATH": library_path()})
        url = f"http://127.0.0.1:{port}"
        handle: ProcessHandle = {
            "model_name": spec.model_name, "serving_name": spec.serving_name,
            "version": spec.version, "pid": proc.pid, "port": port, "url": url,
            "log": str(log), "image_uri": spec.image_uri, "deployment_id": spec.deployment_id,
            "requirements": spec.requirements, "state": state}
        self._save(handle)
        return Applied(inference_url=url, handle=handle)

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
            with urllib.request.urlopen(f"{handle['url']}/ping", timeout=2) as response:
                ready = response.status == 200
        except (urllib.error.URLError, OSError):
            ready = False
        return RolloutStatus(ready=ready, inference_url=handle["url"],
                             message="ready" if ready else "starting", details=log_tail)

    def invoke(self, handle: Handle, path: str, payload: Any, *,
               timeout: float) -> Answer | None:
        return post_json(f"{read(ProcessHandle, handle)['url']}{path}", payload,
                         timeout=timeout)

    def lock(self, model_name: str) -> AbstractContextManager[None]:
        return file_lock(self._dir(model_name) / ".lock")

    def promote(self, handle: Handle) -> str | None:
        mine = read(ProcessHandle, handle)
        return promote_by_records(mine, self.records(mine["model_name"]),
                                  go_live=self._go_live, retire=self._stop,
                                  discard=self._stop)

    def _go_live(self, handle: ProcessHandle) -> None:
        self._save({**handle, "state": "serving"})

    def discard(self, handle: Handle) -> None:
        self._stop(read(ProcessHandle, handle))

    def _stop(self, record: ProcessHandle) -> None:
        stop_pid(record["pid"])
        self._record_path(record["model_name"], record["version"]).unlink(missing_ok=True)

    def restore(self) -> list[str]:
        """After a restart: serve again what served before, on the same port; wait for it."""
        restored: list[Applied] = []
        for record in self.records():
            if record["state"] != "serving" or pid_alive(record["pid"]):
                continue
            applied = self._start(WorkloadSpec(
                model_name=record["model_name"], version=record["version"],
                image_uri=record["image_uri"], deployment_id=record["deployment_id"],
                requirements=record["requirements"]), port=record["port"], state="serving")
            restored.append(applied)
        deadline = time.monotonic() + 120
        for applied in restored:
            while time.monotonic() < deadline and not self.status(applied.handle).ready \
                    and not self.status(applied.handle).failed:
                time.sleep(0.3)
        return [applied.inference_url for applied in restored]

    def stop_all(self) -> int:
        count = 0
        for record in self.records():
            if pid_alive(record["pid"]):
                stop_pid(record["pid"])
                count += 1
        return count

