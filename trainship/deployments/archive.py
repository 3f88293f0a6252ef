"""The local archive: one JSON file per deployment under the archive directory, so that
deployments outlive a restart of the local stack (moto keeps executions in memory only).

A file holds a running marker from the moment the deployment starts, then its finished
record. A deployment still marked running when the stack starts again was cut short by
the restart: ``interrupted`` is its record.

A finished record can carry a model's inference token (``result.inference_token``): the
directory is 0700 and every file 0600, its owner's only.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypedDict, cast

from trainship.deployments.history import iso
from trainship.errors import ErrorDocument
from trainship.records import RecordJson, error_json

INTERRUPTED = "LocalStackRestarted"


class RunningMarker(TypedDict):
    """What the archive holds for a deployment that has not finished (yet)."""

    deployment_id: str
    running: Literal[True]
    started_at: str | None


class Archive:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, deployment_id: str) -> Path:
        return self.directory / f"{deployment_id}.json"

    def _write(self, deployment_id: str, data: RecordJson | RunningMarker) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)  # also an archive made before records held tokens
        path = self._path(deployment_id)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)  # O_EXCL below: created 0600, never another mode first
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data, indent=2, default=str))
        tmp.replace(path)  # readers see the old file or the new one, never half of one

    def _entries(self) -> list[RecordJson | RunningMarker]:
        return [json.loads(path.read_text()) for path in sorted(self.directory.glob("*.json"))]

    def mark_running(self, deployment_id: str, started_at: str | None) -> None:
        self._write(deployment_id, {"deployment_id": deployment_id, "running": True,
                                    "started_at": started_at})

    def keep(self, record: RecordJson) -> None:
        """Keep a finished deployment's record (it replaces the running marker)."""
        self._write(record["deployment_id"], record)

    def finished(self, deployment_id: str) -> RecordJson | None:
        """The finished record; None for an unknown or a still running deployment."""
        path = self._path(deployment_id)
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return None if data.get("running") else cast(RecordJson, data)

    def finished_records(self) -> list[RecordJson]:
        return [cast(RecordJson, entry) for entry in self._entries()
                if not entry.get("running")]

    def running(self) -> list[RunningMarker]:
        return [cast(RunningMarker, entry) for entry in self._entries()
                if entry.get("running")]


def interrupted(marker: RunningMarker) -> RecordJson:
    """The record of a deployment that was running when the local stack stopped."""
    doc = ErrorDocument(error=INTERRUPTED,
                        message="The local stack stopped while this deployment was running",
                        help="Deploy again; nothing of this deployment is serving.")
    return {"deployment_id": marker["deployment_id"], "status": "FAILED",
            "started_at": marker.get("started_at"), "stopped_at": iso(datetime.now(UTC)),
            "steps": [], "builds": [],
            "error": error_json(doc)}
