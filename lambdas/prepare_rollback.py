"""PrepareRollback: check the rollback again, hand DeployModel the version and its image."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from lambdas._common import step_handler
from trainship import rollback
from trainship.config import Settings
from trainship.image_pins import pins_from_env


class RollbackEvent(BaseModel):
    request: Any  # the execution input: {"action": "rollback", "model_name", "version"}
    deployment_id: str
    started_at: str = ""


@step_handler("PrepareRollback", RollbackEvent)
def handler(event: RollbackEvent, context: LambdaContext) -> dict[str, Any]:
    settings = Settings.from_env()
    return rollback.prepare(
        event.request, deployment_id=event.deployment_id, started_at=event.started_at,
        staging_uri=settings.staging_uri, tracking_uri=settings.tracking_uri,
        alias=settings.model_alias, targets=settings.targets, images=pins_from_env()).out()
