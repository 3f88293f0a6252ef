"""CheckRollout: is the new version ready? RolloutFailed when it cannot become so."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._common import step_handler
from trainship import steps
from trainship.cluster.drivers import driver_from_settings
from trainship.config import Settings
from trainship.state import DeploymentState


@step_handler("CheckRollout", DeploymentState)
def handler(event: DeploymentState, context: LambdaContext) -> dict[str, Any]:
    settings = Settings.from_env()
    driver = driver_from_settings(settings, event.target)
    return steps.check_rollout(event, driver=driver,
                               watch_seconds=settings.rollout_watch_seconds).out()
