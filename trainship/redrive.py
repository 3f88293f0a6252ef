"""Redrive a failed deployment: Step Functions' RedriveExecution on its execution.

The execution resumes at the state it ended in, with the input that state had; the states
that succeeded (training among them) do not run again: a deployment stopped (ABORTED) or
timed out during BuildImage builds again without retraining. Every Catch of the state
machine leads to ``<State>Caught``, RecordFailure and the DeploymentFailed Task, the state
a redrive restarts (AWS, "Redriving executions"); redriven, DeploymentFailed resumes the
caught state (trainship.deployment_failed), so a BuildImage that failed builds again,
still without retraining. Refused here (AWS would accept them), with nothing changed:
running and succeeded deployments, a failed ValidateRequest (the request itself: it would
fail the same way), and executions of a definition whose DeploymentFailed was a Fail state
(no ``<State>Caught`` in their history: they would fail there again at once).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from trainship.deployments import DeploymentStore
from trainship.errors import DeploymentNotRedrivable, TransientError
from trainship.pipeline import CAUGHT_SUFFIX, FAILED_STATE, RESUME_AT
from trainship.records import RecordJson

REDRIVABLE = ("FAILED", "ABORTED", "TIMED_OUT")


def caught_step(record: RecordJson) -> str | None:
    """The state whose failure the execution last caught (its ``<State>Caught`` step);
    None when its history has none."""
    for step in reversed(record.get("steps") or []):
        if step["name"].endswith(CAUGHT_SUFFIX):
            return step["name"][:-len(CAUGHT_SUFFIX)]
    return None


def check_redrivable(record: RecordJson) -> None:
    """Refuse (DeploymentNotRedrivable) what a redrive cannot resume."""
    deployment_id, status = record["deployment_id"], record["status"]
    if status not in REDRIVABLE:
        raise DeploymentNotRedrivable(
            f"Deployment {deployment_id} is {status}; only a failed deployment can be "
            "redriven", details=f"status: {status}")
    if record.get("current_step") != FAILED_STATE:
        return
    document = record.get("error")
    error = document["error"] if document else ""
    failed = caught_step(record)
    if failed is None:
        raise DeploymentNotRedrivable(
            f"Deployment {deployment_id} failed with {error} under an earlier definition of "
            "the state machine, whose DeploymentFailed state fails again when redriven",
            details=f"error: {error}")
    if failed not in RESUME_AT:
        raise DeploymentNotRedrivable(
            f"Deployment {deployment_id} failed with {error} at {failed}, a step a redrive "
            "does not resume (ValidateRequest: the request itself would fail the same way)",
            details=f"error: {error}; step: {failed}")


def redrive(store: DeploymentStore, deployment_id: str,
            client_token: str | None = None) -> RecordJson:
    """RedriveExecution on the deployment's execution; its record (RUNNING again)."""
    record = store.get(deployment_id)  # DeploymentNotFound
    check_redrivable(record)
    arn = store.execution_arn(deployment_id)
    kwargs: dict[str, Any] = {"executionArn": arn}
    if client_token:
        kwargs["clientToken"] = client_token
    try:
        store.sfn.redrive_execution(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", str(exc))
        if code == "ExecutionDoesNotExist":
            raise DeploymentNotRedrivable(
                f"Step Functions no longer knows deployment {deployment_id}'s execution (its "
                "history expired, or the local stack, which keeps executions in memory, has "
                "restarted since)",
                details=message) from exc
        if code == "ExecutionLimitExceeded":  # a capacity limit that clears: not a refusal
            raise TransientError(
                f"Step Functions is running as many executions as it may; deployment "
                f"{deployment_id} was not redriven", details=message,
                help="Redrive again once running deployments end (RedriveExecution's "
                     "ExecutionLimitExceeded: the account's open executions quota).") from exc
        if code == "ExecutionNotRedrivable":
            raise DeploymentNotRedrivable(
                f"Step Functions refused to redrive deployment {deployment_id}: {code}",
                details=message) from exc
        raise
    if store.archive is not None:
        store.archive.mark_running(deployment_id, record.get("started_at"))
    return store.get(deployment_id)
