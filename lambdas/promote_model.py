"""PromoteModel: make the new version live, pin its image, move the MLflow alias."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._common import step_handler
from trainship import steps
from trainship.cluster.drivers import driver_from_settings
from trainship.config import Settings
from trainship.image_pins import pins_from_env
from trainship.state import DeploymentState


@step_handler("PromoteModel", DeploymentState)
def handler(event: DeploymentState, context: LambdaContext) -> dict[str, Any]:
    settings = Settings.from_env()
    return steps.promote_model(event, settings=settings,
                               driver=driver_from_settings(settings, event.target),
                               pins=pins_from_env()).out()
