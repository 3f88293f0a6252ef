"""DeploymentFailed, the state every caught failure ends in: it fails the execution with
the error RecordFailure recorded, and resumes the failed step when the execution is
redriven.

Step Functions redrives an execution from the state it ended in, with the input that state
had (https://docs.aws.amazon.com/step-functions/latest/dg/redrive-executions.html). A Fail
state there would just fail again; this Task state tells the two runs apart by
``$$.Execution.RedriveCount`` (0 until the execution is redriven, AWS's "Context object"
page), compared with the count the failed step's ``<State>Caught`` state recorded: higher
means this run is a redrive restarting DeploymentFailed, so the deployment resumes. A
failure caught after the redrive carries the new count and fails again, so a step that
keeps failing never loops.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict

from trainship.errors import ErrorDocument, InternalError, TrainshipError, document_from_json
from trainship.pipeline import RESUME_AT
from trainship.state import FailedStep

LOG = logging.getLogger(__name__)

# What the failure path added to the failed state's input (its Catch, <State>Caught,
# RecordFailure): taken off again before the state is resumed.
FAILURE_KEYS = ("failure", "failed_step", "recorded")
# The error document's JSON goes into Lambda's errorMessage, and Lambda's error payload
# (errorMessage, errorType, stackTrace) is the Cause, which Step Functions caps at 32,768
# characters (TaskFailedEventDetails / ExecutionFailedEventDetails, "cause"): the details
# are cut to keep the document (escaped inside the payload) well under that.
RECORDED_CAUSE_CHARS = 24_000


class DeploymentFailedEvent(BaseModel):
    """DeploymentFailed's payload: the state (the failed state's input, ``$.failure``,
    ``$.failed_step``, ``$.recorded``) and ``$$.Execution.RedriveCount``."""

    model_config = ConfigDict(extra="ignore")

    state: dict[str, Any]
    redrive_count: int = 0


class RecordedFailure(TrainshipError):
    """A recorded failure raised again; each is raised as a subclass named after the
    recorded error (see :func:`recorded_failure`), its document kept as recorded."""

    recorded: ErrorDocument

    def document(self) -> ErrorDocument:
        return self.recorded


def recorded_failure(recorded: dict[str, Any]) -> RecordedFailure:
    """RecordFailure's ``{"error", "cause"}`` as an exception whose class name is the error
    name (Lambda reports the class name as errorType, which becomes the execution's Error)
    and whose message is the error document (Lambda's errorMessage, inside the Cause)."""
    error = str(recorded.get("error") or "InternalError")
    doc = document_from_json(str(recorded.get("cause") or "")) or InternalError(
        f"{error}: the failure was recorded without an error document",
        details=str(recorded.get("cause") or "")[-4000:]).document()
    while len(json.dumps(doc.to_json())) > RECORDED_CAUSE_CHARS and doc.details:
        doc = doc.model_copy(update={"details": doc.details[len(doc.details) // 2:]})
    cls = type(error, (RecordedFailure,), {"__module__": __name__})
    failure: RecordedFailure = cls(doc.message, details=doc.details, help=doc.help,
                                   step=doc.step)
    failure.recorded = doc
    return failure


def deployment_failed(event: DeploymentFailedEvent) -> dict[str, Any]:
    """End the deployment with the error RecordFailure recorded (raised: the execution
    fails with it). Redriven, Step Functions restarts this state with the same input and a
    higher ``$$.Execution.RedriveCount`` than the failed step's: then ``resume_at`` (the
    step to run again, trainship.pipeline.RESUME_AT) and ``state``, the input that step
    failed with. A step that cannot resume (ValidateRequest) fails the same way again."""
    failed = FailedStep.model_validate(event.state.get("failed_step") or {})
    resume_at = RESUME_AT.get(failed.name)
    if event.redrive_count > failed.redrive_count and resume_at is not None:
        LOG.info("redriven: resuming %s failed at %s", resume_at, failed.name)
        return {"resume_at": resume_at,
                "state": {k: v for k, v in event.state.items() if k not in FAILURE_KEYS}}
    raise recorded_failure(event.state.get("recorded") or {})
