"""SmokeTestModel: send the model's logged input example to the new version's /invocations."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._common import step_handler
from trainship import steps
from trainship.cluster.drivers import driver_from_settings
from trainship.config import Settings
from trainship.state import DeploymentState

# stop retrying this long before Lambda's own timeout, so the failure is ours to name
MARGIN_SECONDS = 10.0


@step_handler("SmokeTestModel", DeploymentState)
def handler(event: DeploymentState, context: LambdaContext) -> dict[str, Any]:
    settings = Settings.from_env()
    budget = context.get_remaining_time_in_millis() / 1000 - MARGIN_SECONDS
    return steps.smoke_test(event, settings=settings,
                            driver=driver_from_settings(settings, event.target),
                            budget_seconds=max(budget, 1.0)).out()
