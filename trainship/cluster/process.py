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
from pathlib import Path
from typing import Any

from trainship.bundles import resolve_bundle
from trainship.cluster import Answer, Applied, RolloutStatus, post_json, promote_by_records
from trainship.cluster.manifests import WorkloadSpec
from trainship.envs import prepare_environment
from trainship.errors import tail
from trainship.names import serving_name
from trainship.procs import file_lock, free_port, library_path, pid_alive, stop_pid


class ProcessDriver:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, model_name: str) -> Path:
        return self.root / serving_name(model_name)

    def _record_path(self, model_name: str, version: str) -> Path:
        return self._dir(model_name) / f"v{version}.json"

    def records(self, model_name: str | None = None) -> list[dict[str, Any]]:
        pattern = f"{serving_name(model_name)}/v*.json" if model_name else "*/v*.json"
        return [json.loads(p.read_text()) for p in sorted(self.root.glob(pattern))]

    def apply(self, spec: WorkloadSpec) -> Applied:
        return self._start(spec.model_name, spec.version, spec.image_uri, spec.deployment_id,
                           spec.requirements, port=free_port(), state="starting")

    def _start(self, model_name: str, version: str, image_uri: str, deployment_id: str,
               requirements: list[str], *, port: int, state: str) -> Applied:
        bundle = resolve_bundle(image_uri)
        python = prepare_environment(requirements, self.root.parent / "envs")
        log = self._dir(model_name) / f"v{version}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [python, "-m", "trainship.serving", "--model-dir", str(bundle / "model"),
                 "--load-cache", str(self.root / "load-cache" / f"{bundle.name}.pkl"),
                 "--host", "127.0.0.1", "--port", str(port),
                 "--workers", os.environ.get("TRAINSHIP_SERVING_WORKERS", "1")],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONPATH": library_path()})
        url = f"http://127.0.0.1:{port}"
        handle = {"model_name": model_name, "serving_name": serving_name(model_name),
                  "version": version, "pid": proc.pid, "port": port,
                  "url": url, "log": str(log), "image_uri": image_uri,
                  "deployment_id": deployment_id, "requirements": requirements,
                  "state": state}
        self._record_path(model_name, version).write_text(json.dumps(handle, indent=2))
        return Applied(inference_url=url, handle=handle)

    def status(self, handle: dict[str, Any]) -> RolloutStatus:
        log_tail = tail(Path(handle["log"]).read_text(errors="replace"), 30) \
            if Path(handle["log"]).exists() else ""
        if not pid_alive(int(handle["pid"])):
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

    def invoke(self, handle: dict[str, Any], path: str, payload: Any, *,
               timeout: float) -> Answer | None:
        return post_json(f"{handle['url']}{path}", payload, timeout=timeout)

    def lock(self, model_name: str) -> AbstractContextManager[None]:
        return file_lock(self._dir(model_name) / ".lock")

    def promote(self, handle: dict[str, Any]) -> str | None:
        return promote_by_records(handle, self.records(handle["model_name"]),
                                  go_live=self._go_live, retire=self.discard,
                                  discard=self.discard)

    def _go_live(self, handle: dict[str, Any]) -> None:
        self._record_path(handle["model_name"], handle["version"]).write_text(
            json.dumps({**handle, "state": "serving"}, indent=2))

    def discard(self, handle: dict[str, Any]) -> None:
        stop_pid(int(handle["pid"]))
        self._record_path(handle["model_name"], handle["version"]).unlink(missing_ok=True)

    def restore(self) -> list[str]:
        """After a restart: serve again what served before, on the same port; wait for it."""
        restored: list[Applied] = []
        for record in self.records():
            if record.get("state") != "serving" or pid_alive(int(record["pid"])):
                continue
            applied = self._start(record["model_name"], record["version"], record["image_uri"],
                                  record["deployment_id"], record.get("requirements", []),
                                  port=int(record["port"]), state="serving")
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
            if pid_alive(int(record["pid"])):
                stop_pid(int(record["pid"]))
                count += 1
        return count

