"""ValidateRequest: decode and check the request and script, stage the script."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from lambdas._common import step_handler
from trainship import steps
from trainship.config import Settings
from trainship.submit import new_deployment_id


class ValidateEvent(BaseModel):
    request: Any
    deployment_id: str | None = None  # the execution name; absent only if none was given
    started_at: str = ""


@step_handler("ValidateRequest", ValidateEvent)
def handler(event: ValidateEvent, context: LambdaContext) -> dict[str, Any]:
    return steps.validate_request(
        event.request, deployment_id=event.deployment_id or new_deployment_id(),
        started_at=event.started_at, settings=Settings.from_env()).out()
