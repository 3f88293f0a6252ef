"""The one adapter between moto's ASL interpreter and local callables.

moto (pinned exactly in pyproject.toml) executes the state machine definition. Its Task
states would call real AWS services; this module replaces the factory that builds them
(``preprocessor.state_task_for``) so that every service Task is routed to a Python
callable: ``route(resource_arn, parameters) -> result``. A callable raises
:class:`TaskFailure` (error name + cause) to fail the Task the way the service would;
Retry and Catch then match on that name. tests/unit/test_sfn_adapter.py pins this
contract, so a moto upgrade that breaks it fails loudly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ServiceResource,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (  # noqa: E501
    StateTaskService,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.parse import preprocessor

from trainship.local import sfn_redrive

Route = Callable[[str, dict[str, Any]], Any]


class TaskFailure(Exception):
    """Fail the Task with this error name and cause (as the AWS service would)."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause[:200]}")
        self.error = error
        self.cause = cause


_route: Route | None = None
_original_state_task_for = getattr(preprocessor, "state_task_for")  # noqa: B009


class LocalServiceTask(StateTaskService):
    """A service Task whose work is done by the installed route."""

    def _validate_service_integration_is_supported(self) -> None:
        return None

    def _get_sfn_resource(self) -> str:
        resource = self.resource
        return resource.api_action + (f".{resource.condition}" if resource.condition else "")

    def _eval_service_task(self, env: Any, resource_runtime_part: Any,
                           normalised_parameters: dict[Any, Any],
                           state_credentials: Any) -> None:
        if _route is None:
            raise RuntimeError("no local task route installed")
        result = _route(self.resource.resource_arn, aws_json(normalised_parameters))
        env.stack.append(result)

    def _from_error(self, env: Any, ex: Exception) -> FailureEvent:
        if isinstance(ex, TaskFailure):
            return FailureEvent(
                env=env,
                error_name=(StatesErrorName.from_name(ex.error)
                            if ex.error.startswith("States.") else CustomErrorName(ex.error)),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(  # type: ignore[typeddict-item]
                    taskFailedEventDetails=TaskFailedEventDetails(
                    error=ex.error, cause=ex.cause, resource=self._get_sfn_resource(),
                    resourceType=self._get_sfn_resource_type())),
            )
        if isinstance(ex, FailureEventException):
            return ex.failure_event
        failure: FailureEvent = super()._from_error(env=env, ex=ex)
        return failure


def _state_task_for(resource: Any) -> Any:
    if isinstance(resource, ServiceResource):
        return LocalServiceTask()
    return _original_state_task_for(resource)


def install(route: Route) -> None:
    """Route every service Task of every execution in this process to ``route``."""
    global _route
    _route = route
    setattr(preprocessor, "state_task_for", _state_task_for)  # noqa: B010
    sfn_redrive.install()  # RedriveExecution, which moto does not answer
    # Expected task failures are part of normal operation; moto logs them at ERROR.
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)


def uninstall() -> None:
    global _route
    _route = None
    setattr(preprocessor, "state_task_for", _original_state_task_for)  # noqa: B010
    sfn_redrive.uninstall()


def aws_json(value: Any) -> Any:
    """A Task's parameters as AWS would send them: moto keeps context-object timestamps
    (``$$.Execution.StartTime``) as datetime objects where AWS has ISO 8601 strings."""

    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return obj.astimezone(UTC).isoformat().replace("+00:00", "Z")
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")

    return json.loads(json.dumps(value, default=default))


def lambda_error_cause(exc: BaseException, stack: list[str]) -> str:
    """Lambda's error payload: what Step Functions puts in a failed Lambda task's Cause."""
    return json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__,
                       "stackTrace": stack})
