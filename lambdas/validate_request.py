"""ValidateRequest: decode and check the request and script, stage the script."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from lambdas._common import logger, metrics, run_step, tracer
from trainship import steps
from trainship.config import Settings
from trainship.submit import new_deployment_id


class ValidateEvent(BaseModel):
    request: Any
    deployment_id: str | None = None  # the execution name; absent only if none was given
    started_at: str = ""


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    parsed = ValidateEvent.model_validate(event)
    state = run_step("ValidateRequest", lambda: steps.validate_request(
        parsed.request, deployment_id=parsed.deployment_id or new_deployment_id(),
        started_at=parsed.started_at,
        settings=Settings.from_env()))
    return state.out()
