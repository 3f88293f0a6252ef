"""DeploymentStore: start an execution, read its status record, list recent ones, and
keep the local archive up to date (explicitly: reads never write)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from trainship.cost import receipt
from trainship.deployments.archive import Archive, interrupted
from trainship.deployments.build_logs import logs_text
from trainship.deployments.history import canary_progress, iso, summarize_history
from trainship.errors import (
    DeploymentNotFound,
    ErrorDocument,
    document_from_cause,
    unrecorded_failure,
)
from trainship.pipeline import TERMINAL_STATUSES
from trainship.records import BriefJson, RecordJson, brief, cost_json, error_json
from trainship.redaction import redact, secret_values


def deployment_status(execution_status: str) -> str:
    """A deployment's status from its execution's: right after a redrive Step Functions may
    report PENDING_REDRIVE (DescribeExecution, ListExecutions): the deployment runs again."""
    return "RUNNING" if execution_status == "PENDING_REDRIVE" else execution_status


def record_of(execution: dict[str, Any], history: list[dict[str, Any]]) -> RecordJson:
    """The status record of a DescribeExecution answer and the execution's history."""
    steps, builds = summarize_history(history)
    status = deployment_status(execution["status"])
    record: RecordJson = {
        "deployment_id": execution["name"],
        "status": status,
        "execution_arn": execution["executionArn"],
        "started_at": iso(execution.get("startDate")),
        "stopped_at": iso(execution.get("stopDate")),
        "current_step": steps[-1]["name"] if steps else None,
        "steps": steps,
        "builds": builds,
        # running: the cost so far; finished: what the execution cost
        "cost": cost_json(receipt(history, final=status in TERMINAL_STATUSES)),
    }
    progress = canary_progress(history) if status != "SUCCEEDED" else None
    if progress is not None:  # under way, or cut short (SUCCEEDED: the result has it all)
        record["canary"] = progress
    if status == "SUCCEEDED" and execution.get("output"):
        record["result"] = json.loads(execution["output"])
    elif status in TERMINAL_STATUSES - {"SUCCEEDED"}:
        doc = document_from_cause(execution.get("cause") or "") or (
            unrecorded_failure(execution["error"], execution.get("cause") or "",
                               record["current_step"])
            if execution.get("error") and steps and steps[-1]["status"] == "FAILED"
            else ErrorDocument(
                error=execution.get("error") or status,
                message=execution.get("cause") or f"the execution ended {status}"))
        record["error"] = error_json(doc)
    return record


class DeploymentStore:
    def __init__(self, sfn: Any, state_machine_arn: str, archive_dir: str = "") -> None:
        self.sfn = sfn
        self.state_machine_arn = state_machine_arn
        self.archive = Archive(Path(archive_dir)) if archive_dir else None

    def execution_arn(self, deployment_id: str) -> str:
        prefix, _, name = self.state_machine_arn.partition(":stateMachine:")
        return f"{prefix}:execution:{name}:{deployment_id}"

    # --- starting --------------------------------------------------------------------

    def start(self, deployment_id: str, execution_input: dict[str, Any]) -> str:
        """Start the execution; the same id and input again returns the same execution.
        With an archive, the deployment is marked running there (see sync_archive)."""
        response = self.sfn.start_execution(stateMachineArn=self.state_machine_arn,
                                            name=deployment_id,
                                            input=json.dumps(execution_input, sort_keys=True))
        if self.archive is not None:
            self.archive.mark_running(deployment_id, iso(response.get("startDate")))
        return str(response["executionArn"])

    # --- reading (never writes) ------------------------------------------------------

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

    def _executions(self) -> Iterator[dict[str, Any]]:
        """ListExecutions of the state machine, every page."""
        paginator = self.sfn.get_paginator("list_executions")
        for page in paginator.paginate(stateMachineArn=self.state_machine_arn):
            yield from page["executions"]

    def running_for(self, model_name: str, *, exclude: str = "") -> list[str]:
        """The ids of the RUNNING executions whose input names ``model_name`` (a
        deployment, rollback or delete of it), ``exclude`` left out: what a rollback or a
        delete must wait for. Only RUNNING: "If you provide a stateMachineArn and a
        PENDING_REDRIVE statusFilter, the API returns a validation exception" (ListExecutions,
        AWS Step Functions API Reference); a redriven execution is RUNNING again. The list
        is eventually consistent ("best effort"), so this check is too."""
        found = []
        paginator = self.sfn.get_paginator("list_executions")
        for page in paginator.paginate(stateMachineArn=self.state_machine_arn,
                                       statusFilter="RUNNING"):
            for execution in page["executions"]:
                if execution["name"] == exclude:
                    continue
                described = self.sfn.describe_execution(executionArn=execution["executionArn"])
                try:
                    data = json.loads(described.get("input") or "null")
                except ValueError:
                    continue
                if isinstance(data, dict) and data.get("model_name") == model_name:
                    found.append(str(execution["name"]))
        return found

    def _live(self, deployment_id: str) -> RecordJson | None:
        """The record from Step Functions; None when it does not know the execution."""
        try:
            execution = self.sfn.describe_execution(
                executionArn=self.execution_arn(deployment_id))
        except self.sfn.exceptions.ExecutionDoesNotExist:
            return None
        return record_of(execution, self._history(execution["executionArn"]))

    def get(self, deployment_id: str) -> RecordJson:
        """The deployment's record (from Step Functions, else from the archive); secret
        values of this process are redacted from it."""
        record = self._live(deployment_id)
        if record is None and self.archive is not None:
            record = self.archive.finished(deployment_id)
        if record is None:
            raise DeploymentNotFound(f"No deployment {deployment_id!r}")
        secrets = secret_values()
        if not secrets:
            return record
        return cast(RecordJson, json.loads(redact(json.dumps(record), [
            json.dumps(s)[1:-1] for s in secrets])))

    def recent(self, limit: int = 50) -> list[BriefJson]:
        """Newest first: the archive's finished deployments, then what Step Functions
        lists (which wins for a deployment in both)."""
        items: dict[str, BriefJson] = {}
        if self.archive is not None:
            for record in self.archive.finished_records():
                items[record["deployment_id"]] = brief(record)
        for execution in self._executions():
            items[execution["name"]] = {
                "deployment_id": execution["name"],
                "status": deployment_status(execution["status"]),
                "started_at": iso(execution.get("startDate")),
                "stopped_at": iso(execution.get("stopDate"))}
        ordered = sorted(items.values(), key=lambda r: r.get("started_at") or "", reverse=True)
        return ordered[:limit]

    def logs(self, deployment_id: str) -> str:
        """Each build's log, then the error document; secrets redacted."""
        return redact(logs_text(self.get(deployment_id)), secret_values())

    # --- the local archive (the writes) ------------------------------------------------

    def sync_archive(self) -> list[str]:
        """Archive every finished deployment not archived yet (those this store marked
        running, and any other execution, e.g. one `aws stepfunctions start-execution`
        started); the ids archived. The local stack calls this every few seconds and when
        it stops, so that finished deployments outlive moto's in-memory Step Functions."""
        if self.archive is None:
            return []
        kept = {record["deployment_id"] for record in self.archive.finished_records()}
        due = [marker["deployment_id"] for marker in self.archive.running()]
        due += [execution["name"] for execution in self._executions()
                if execution["status"] in TERMINAL_STATUSES
                and execution["name"] not in kept and execution["name"] not in due]
        archived = []
        for deployment_id in due:
            record = self._live(deployment_id)
            if record is not None and record["status"] in TERMINAL_STATUSES:
                self.archive.keep(record)
                archived.append(deployment_id)
        return archived

    def mark_interrupted(self) -> list[str]:
        """After a restart: executions that were running when the stack stopped failed."""
        if self.archive is None:
            return []
        marked = []
        for marker in self.archive.running():
            self.archive.keep(interrupted(marker))
            marked.append(marker["deployment_id"])
        return marked
