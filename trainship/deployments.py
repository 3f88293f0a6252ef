"""Deployments as the API sees them: Step Functions executions, read and summarised.

A deployment id is the execution name. The status document is built from
DescribeExecution and GetExecutionHistory; with an archive directory (the local stack)
finished executions are also kept on disk so that they survive a restart.
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainship.errors import DeploymentNotFound, ErrorDocument, document_from_json
from trainship.pipeline import TERMINAL_STATUSES
from trainship.redaction import redact, secret_values

INTERRUPTED = "LocalStackRestarted"


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def summarize_history(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                               list[dict[str, Any]]]:
    """Steps (state name, status, seconds) and builds (CodeBuild results) from history."""
    steps: list[dict[str, Any]] = []
    builds: list[dict[str, Any]] = []
    for event in events:
        kind = event["type"]
        stamp = event["timestamp"]
        if isinstance(stamp, str):
            stamp = datetime.fromisoformat(stamp)
        if kind.endswith("StateEntered"):
            steps.append({"name": event["stateEnteredEventDetails"]["name"],
                          "status": "RUNNING", "entered": stamp})
        elif kind.endswith("StateExited") and steps:
            current = steps[-1]
            if current["status"] == "RUNNING":
                current["status"] = "SUCCEEDED"
            current["seconds"] = round((stamp - current["entered"]).total_seconds(), 1)
        elif kind in ("TaskFailed", "LambdaFunctionFailed", "TaskTimedOut",
                      "ExecutionFailed") and steps and steps[-1]["status"] == "RUNNING":
            steps[-1]["status"] = "FAILED"
        if kind in ("TaskSucceeded", "TaskFailed"):
            details = event.get("taskSucceededEventDetails") or event.get(
                "taskFailedEventDetails") or {}
            if details.get("resourceType") == "codebuild":
                raw = details.get("output") or details.get("cause") or "{}"
                try:
                    build = json.loads(raw)
                except ValueError:
                    continue
                build = build.get("Build", build)
                builds.append({"step": steps[-1]["name"] if steps else None,
                               "build_id": build.get("Id"),
                               "status": build.get("BuildStatus"),
                               "logs": build.get("Logs") or {}})
    for item in steps:
        item["entered"] = _iso(item["entered"])
    return steps, builds


def read_build_log(logs: dict[str, Any], limit_bytes: int = 1 << 20) -> str:
    """A build's log: from the file it names, or from CloudWatch Logs."""
    link = str(logs.get("DeepLink") or "")
    if link.startswith("file://"):
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(link).path))
        return path.read_text(errors="replace")[-limit_bytes:] if path.exists() else ""
    group, stream = logs.get("GroupName"), logs.get("StreamName")
    if not group or not stream:
        return ""
    import boto3

    client = boto3.client("logs")
    lines: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream,
                                  "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        page = client.get_log_events(**kwargs)
        lines.extend(e["message"].rstrip("\n") for e in page["events"])
        if page.get("nextForwardToken") in (None, token):
            break
        token = page["nextForwardToken"]
    return "\n".join(lines)[-limit_bytes:]


class DeploymentStore:
    def __init__(self, sfn: Any, state_machine_arn: str, archive_dir: str = "") -> None:
        self.sfn = sfn
        self.state_machine_arn = state_machine_arn
        self.archive = Path(archive_dir) if archive_dir else None

    def execution_arn(self, deployment_id: str) -> str:
        prefix, _, name = self.state_machine_arn.partition(":stateMachine:")
        return f"{prefix}:execution:{name}:{deployment_id}"

    # --- starting --------------------------------------------------------------------

    def start(self, deployment_id: str, execution_input: dict[str, Any]) -> str:
        """Start the execution; the same id and input again returns the same execution."""
        response = self.sfn.start_execution(stateMachineArn=self.state_machine_arn,
                                            name=deployment_id,
                                            input=json.dumps(execution_input, sort_keys=True))
        if self.archive is not None:
            self._write_archive(deployment_id, {"running": True, "started_at": _iso(
                response.get("startDate"))})
        return str(response["executionArn"])

    # --- reading ---------------------------------------------------------------------

    def execution_input(self, deployment_id: str) -> Any:
        execution = self.sfn.describe_execution(executionArn=self.execution_arn(deployment_id))
        return json.loads(execution.get("input") or "null")

    def _history(self, arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
        while True:
            page = self.sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def _live(self, deployment_id: str) -> dict[str, Any] | None:
        try:
            execution = self.sfn.describe_execution(
                executionArn=self.execution_arn(deployment_id))
        except self.sfn.exceptions.ExecutionDoesNotExist:
            return None
        history = self._history(execution["executionArn"])
        record = self._record(execution, history)
        if self.archive is not None and record["status"] in TERMINAL_STATUSES:
            self._write_archive(deployment_id, record)
        return record

    def _record(self, execution: dict[str, Any], history: list[dict[str, Any]]
                ) -> dict[str, Any]:
        steps, builds = summarize_history(history)
        status = execution["status"]
        record: dict[str, Any] = {
            "deployment_id": execution["name"],
            "status": status,
            "execution_arn": execution["executionArn"],
            "started_at": _iso(execution.get("startDate")),
            "stopped_at": _iso(execution.get("stopDate")),
            "current_step": steps[-1]["name"] if steps else None,
            "steps": steps,
            "builds": builds,
        }
        if status == "SUCCEEDED" and execution.get("output"):
            record["result"] = json.loads(execution["output"])
        elif status in TERMINAL_STATUSES - {"SUCCEEDED"}:
            doc = document_from_json(execution.get("cause") or "") or ErrorDocument(
                error=execution.get("error") or status,
                message=execution.get("cause") or f"the execution ended {status}")
            record["error"] = doc.model_dump()
        return record

    def get(self, deployment_id: str) -> dict[str, Any]:
        """The deployment's record; secret values of this process are redacted from it."""
        record = self._live(deployment_id)
        if record is None:
            archived = self._read_archive(deployment_id)
            if archived is None or archived.get("running"):
                raise DeploymentNotFound(f"No deployment {deployment_id!r}")
            record = archived
        secrets = secret_values()
        if not secrets:
            return record
        redacted: dict[str, Any] = json.loads(redact(json.dumps(record), [
            json.dumps(s)[1:-1] for s in secrets]))
        return redacted

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        items: dict[str, dict[str, Any]] = {}
        if self.archive is not None:
            for path in self.archive.glob("*.json"):
                record = json.loads(path.read_text())
                if not record.get("running"):
                    items[record["deployment_id"]] = _brief(record)
        paginator = self.sfn.get_paginator("list_executions")
        for page in paginator.paginate(stateMachineArn=self.state_machine_arn):
            for execution in page["executions"]:
                items[execution["name"]] = {
                    "deployment_id": execution["name"], "status": execution["status"],
                    "started_at": _iso(execution.get("startDate")),
                    "stopped_at": _iso(execution.get("stopDate"))}
        ordered = sorted(items.values(), key=lambda r: r.get("started_at") or "", reverse=True)
        return ordered[:limit]

    def logs(self, deployment_id: str) -> str:
        record = self.get(deployment_id)
        parts = []
        for build in record.get("builds", []):
            parts.append(f"===== {build['step']} build {build['build_id']} "
                         f"({build['status']}) =====")
            parts.append(read_build_log(build.get("logs") or {}))
        if record.get("error"):
            parts.append(f"===== error =====\n{json.dumps(record['error'], indent=2)}")
        return redact("\n".join(parts) + "\n", secret_values())

    # --- local archive -----------------------------------------------------------------

    def _write_archive(self, deployment_id: str, record: dict[str, Any]) -> None:
        assert self.archive is not None
        self.archive.mkdir(parents=True, exist_ok=True)
        path = self.archive / f"{deployment_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"deployment_id": deployment_id, **record}, indent=2,
                                  default=str))
        tmp.replace(path)

    def _read_archive(self, deployment_id: str) -> dict[str, Any] | None:
        if self.archive is None:
            return None
        path = self.archive / f"{deployment_id}.json"
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def sync_archive(self) -> None:
        """Archive every finished execution (the local stack calls this periodically)."""
        if self.archive is None:
            return
        for path in list(self.archive.glob("*.json")):
            record = json.loads(path.read_text())
            if record.get("running"):
                self._live(record["deployment_id"])

    def mark_interrupted(self) -> list[str]:
        """After a restart: executions that were running when the stack stopped failed."""
        if self.archive is None:
            return []
        marked = []
        for path in self.archive.glob("*.json"):
            record = json.loads(path.read_text())
            if record.get("running"):
                doc = ErrorDocument(
                    error=INTERRUPTED,
                    message="The local stack stopped while this deployment was running",
                    help="Deploy again; nothing of this deployment is serving.")
                self._write_archive(record["deployment_id"], {
                    "status": "FAILED", "started_at": record.get("started_at"),
                    "stopped_at": _iso(datetime.now(UTC)), "steps": [],
                    "builds": [], "error": doc.model_dump()})
                marked.append(record["deployment_id"])
        return marked


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in ("deployment_id", "status", "started_at", "stopped_at")}
