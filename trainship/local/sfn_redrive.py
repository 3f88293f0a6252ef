"""RedriveExecution on the local Step Functions endpoint (moto 5.2.5 has no handler for it
and answers 500).

AWS's semantics (https://docs.aws.amazon.com/step-functions/latest/dg/redrive-executions.html
and the RedriveExecution API reference):

* a FAILED, ABORTED or TIMED_OUT execution of a STANDARD state machine is redriven; a
  RUNNING or SUCCEEDED one, one stopped more than 14 days ago, one opened more than a year
  ago, or one with 24,999 history events or more is ``ExecutionNotRedrivable``;
* the redrive keeps the execution ARN, appends to its history (an ``ExecutionRedriven``
  event, then the states), restarts the state that did not succeed with the input it had,
  and does not rerun the states that succeeded; the state machine's timeout starts again;
* ``clientToken``: the last 10 tokens of successful redrives, each for 15 minutes, answer
  again without redriving again;
* DescribeExecution reports ``redriveCount``, ``redriveDate``, ``redriveStatus`` and,
  when not redrivable, ``redriveStatusReason``;
* the Context object's ``$$.Execution.RedriveCount`` is 0 until the execution is redriven
  (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-contextobject.html;
  moto leaves it out), then the redrive's number, with ``RedriveTime``.

A state that failed and was *caught* is not what a redrive restarts: the execution went
on from the catcher, and the state it ended in (a ``Fail`` state, or the deployment state
machine's DeploymentFailed Task, which then resumes the caught step) is the one that did
not succeed. This module restarts top-level states (the deployment state machine has
no Map or Parallel state).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.core.exceptions import AWSError
from moto.core.responses import ActionResult
from moto.core.utils import iso_8601_datetime_with_milliseconds
from moto.stepfunctions import responses
from moto.stepfunctions.parser.api import (
    ExecutionRedrivenEventDetails,
    ExecutionStatus,
    HistoryEventType,
    StateMachineType,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventHistoryContext
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
from moto.stepfunctions.parser.models import stepfunctions_parser_backends
from moto.stepfunctions.parser.utils import TMP_THREADS

REDRIVABLE_DAYS = 14
MAX_OPEN = timedelta(days=365)
MAX_HISTORY_EVENTS = 24_999
TOKENS_KEPT = 10
TOKEN_SECONDS = 15 * 60
REDRIVABLE_STATUSES = {ExecutionStatus.FAILED, ExecutionStatus.ABORTED,
                       ExecutionStatus.TIMED_OUT}

_lock = threading.Lock()
_original_describe = responses.StepFunctionResponse.describe_execution
_original_environment = ExecutionWorker._get_evaluation_environment


class ExecutionNotRedrivable(AWSError):
    TYPE = "ExecutionNotRedrivable"
    STATUS = 400


def _status(execution: Any) -> ExecutionStatus:
    return ExecutionStatus(execution.status)


def _events(execution: Any) -> list[dict[str, Any]]:
    env = execution.exec_worker.env if execution.exec_worker is not None else None
    return list(env.event_manager.get_event_history()) if env is not None else []


def not_redrivable_reason(execution: Any, now: datetime | None = None) -> str | None:
    """Why RedriveExecution would refuse this execution (AWS's redriveStatusReason
    wording); None when it can be redriven."""
    now = now or datetime.now(UTC)
    status = _status(execution)
    if execution.sm_type == StateMachineType.EXPRESS:
        return "Execution of an EXPRESS state machine cannot be redriven."
    if status not in REDRIVABLE_STATUSES:
        return f"Execution is {status.value} and cannot be redriven."
    if execution.start_date and now - execution.start_date > MAX_OPEN:
        return "Execution has exceeded the max execution time."
    if execution.stop_date and now - execution.stop_date > timedelta(days=REDRIVABLE_DAYS):
        return "Execution redrivable period exceeded."
    if len(_events(execution)) >= MAX_HISTORY_EVENTS:
        return "Execution history event limit exceeded."
    return None


def unsuccessful_state(events: list[dict[str, Any]]) -> tuple[str, Any] | None:
    """The state the execution ended in without leaving it successfully, and the input
    it entered with (from the history's last StateEntered event with no StateExited)."""
    last: tuple[str, Any] | None = None
    for event in events:
        if event["type"].endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            last = (details["name"], json.loads(details.get("input") or "null"))
        elif event["type"].endswith("StateExited"):
            last = None
    return last


class RedriveWorker(ExecutionWorker):
    """Runs the execution again from ``start_at`` with ``state_input``, appending to the
    history of the attempt before it."""

    def __init__(self, previous: ExecutionWorker, start_at: str, state_input: Any,
                 redrive_count: int, redrive_date: datetime, comm: Any) -> None:
        super().__init__(evaluation_details=previous._evaluation_details,
                         exec_comm=comm,
                         cloud_watch_logging_session=previous._cloud_watch_logging_session,
                         activity_store=previous._activity_store)
        self._previous = previous
        self._start_at = start_at
        self._state_input = state_input
        self._redrive_count = redrive_count
        self._redrive_date = redrive_date

    def _get_evaluation_entrypoint(self) -> Any:
        definition = json.loads(self._evaluation_details.state_machine_details.definition)
        definition["StartAt"] = self._start_at
        return AmazonStateLanguageParser.parse(json.dumps(definition))[0]

    def _get_evaluation_environment(self) -> Any:
        env = super()._get_evaluation_environment()
        previous_env = self._previous.env
        if previous_env is None:
            raise RuntimeError("the execution to redrive never started")
        env.event_manager = previous_env.event_manager  # the history goes on
        last_id = max((e["id"] for e in env.event_manager.get_event_history()), default=0)
        env.event_history_context = EventHistoryContext(  # type: ignore[misc]
            previous_event_id=last_id)
        # the Context object's $$.Execution.RedriveCount / RedriveTime
        execution: dict[str, Any] = env.states.context_object.context_object_data[
            "Execution"]  # type: ignore[assignment]
        execution["RedriveCount"] = self._redrive_count
        execution["RedriveTime"] = iso_8601_datetime_with_milliseconds(self._redrive_date)
        env.states.reset(input_value=self._state_input)
        return env

    def start(self) -> None:
        # built before the thread starts, so that readers never see an empty history
        program = self._get_evaluation_entrypoint()
        self.env = self._get_evaluation_environment()
        self.env.event_manager.add_event(
            context=self.env.event_history_context,
            event_type=HistoryEventType.ExecutionRedriven,
            event_details=EventDetails(  # type: ignore[typeddict-item]
                executionRedrivenEventDetails=ExecutionRedrivenEventDetails(
                    redriveCount=self._redrive_count)),
            timestamp=self._redrive_date)

        def run() -> None:
            program.eval(self.env)
            self._execution_communication.terminated()

        thread = threading.Thread(target=run, daemon=True)
        TMP_THREADS.append(thread)
        thread.start()


def redrive(backend: Any, execution_arn: str, client_token: str | None = None) -> datetime:
    """RedriveExecution: the redrive's date (that of the earlier redrive for a client
    token used in the last 15 minutes)."""
    execution = backend.describe_execution(execution_arn)  # ExecutionDoesNotExist
    now = datetime.now(UTC)
    with _lock:
        tokens: dict[str, tuple[datetime, datetime]] = getattr(
            execution, "trainship_redrive_tokens", {})
        if client_token and client_token in tokens:
            first_used, date = tokens[client_token]
            if (now - first_used).total_seconds() <= TOKEN_SECONDS:
                return date
        reason = not_redrivable_reason(execution, now)
        target = unsuccessful_state(_events(execution)) if reason is None else None
        if reason is None and target is None:
            reason = "Execution has no state to redrive."
        if reason is not None or target is None:
            raise ExecutionNotRedrivable(f"Execution '{execution_arn}' cannot be redriven: "
                                         f"{reason}")
        count = getattr(execution, "trainship_redrive_count", 0) + 1
        worker = RedriveWorker(execution.exec_worker, target[0], target[1], count, now,
                               execution._get_start_execution_worker_comm())
        execution.trainship_redrive_count = count
        execution.trainship_redrive_date = now
        execution.exec_status = ExecutionStatus.RUNNING
        execution.stop_date = None
        execution.error = None
        execution.cause = None
        execution.output = None
        execution.exec_worker = worker
        worker.start()
        if client_token:
            tokens[client_token] = (now, now)
            execution.trainship_redrive_tokens = dict(list(tokens.items())[-TOKENS_KEPT:])
        return now


def find_execution(execution_arn: str) -> Any:
    """moto's execution object for an ARN (the executing backend of its account/region)."""
    _, _, _, region, account, *_ = execution_arn.split(":")
    return stepfunctions_parser_backends[account][region].describe_execution(execution_arn)


def _redrive_execution(self: responses.StepFunctionResponse) -> ActionResult:
    date = redrive(self.stepfunction_backend, self._get_param("executionArn"),
                   self._get_param("clientToken"))
    return ActionResult({"redriveDate": date})


def _describe_execution(self: responses.StepFunctionResponse) -> ActionResult:
    result = _original_describe(self)
    response: dict[str, Any] = dict(result.result)  # type: ignore[call-overload]
    execution = self.stepfunction_backend.describe_execution(response["executionArn"])
    response["redriveCount"] = getattr(execution, "trainship_redrive_count", 0)
    date = getattr(execution, "trainship_redrive_date", None)
    if date is not None:
        response["redriveDate"] = date
    reason = not_redrivable_reason(execution)
    response["redriveStatus"] = "REDRIVABLE" if reason is None else "NOT_REDRIVABLE"
    if reason is not None:
        response["redriveStatusReason"] = reason
    return ActionResult(response)


def _environment_with_redrive_count(self: ExecutionWorker) -> Any:
    """Every execution's Context object has ``Execution.RedriveCount`` (0 until redriven,
    as on AWS); RedriveWorker sets the redrive's own count over it."""
    env = _original_environment(self)
    execution: dict[str, Any] = env.states.context_object.context_object_data[
        "Execution"]  # type: ignore[assignment]
    execution.setdefault("RedriveCount", 0)
    return env


def install() -> None:
    """Answer RedriveExecution, add the redrive fields to DescribeExecution and
    ``RedriveCount`` to the Context object."""
    setattr(ExecutionWorker, "_get_evaluation_environment",  # noqa: B010
            _environment_with_redrive_count)
    setattr(responses.StepFunctionResponse, "redrive_execution",  # noqa: B010
            _redrive_execution)
    setattr(responses.StepFunctionResponse, "describe_execution",  # noqa: B010
            _describe_execution)


def uninstall() -> None:
    setattr(ExecutionWorker, "_get_evaluation_environment",  # noqa: B010
            _original_environment)
    if hasattr(responses.StepFunctionResponse, "redrive_execution"):
        delattr(responses.StepFunctionResponse, "redrive_execution")
    setattr(responses.StepFunctionResponse, "describe_execution",  # noqa: B010
            _original_describe)
