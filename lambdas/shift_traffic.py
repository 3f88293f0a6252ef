"""ShiftTraffic: a canary step's share of the traffic to the new version, and its baseline."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._common import step_handler
from trainship import canary_steps
from trainship.cluster.drivers import driver_from_settings
from trainship.config import Settings
from trainship.state import DeploymentState


@step_handler("ShiftTraffic", DeploymentState)
def handler(event: DeploymentState, context: LambdaContext) -> dict[str, Any]:
    settings = Settings.from_env()
    return canary_steps.shift_traffic(
        event, driver=driver_from_settings(settings, event.target)).out()
