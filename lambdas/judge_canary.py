"""JudgeCanary: both versions' /metrics over the canary step, judged against the policy."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._common import step_handler
from trainship import canary_steps
from trainship.cluster.drivers import driver_from_settings
from trainship.config import Settings
from trainship.state import DeploymentState


@step_handler("JudgeCanary", DeploymentState)
def handler(event: DeploymentState, context: LambdaContext) -> dict[str, Any]:
    settings = Settings.from_env()
    return canary_steps.judge_canary(
        event, driver=driver_from_settings(settings, event.target)).out()
