"""SmokeTestModel: see trainship.steps.smoke_test."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._common import logger, metrics, run_step, tracer
from trainship import steps
from trainship.config import Settings
from trainship.state import DeploymentState


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=DeploymentState)
def handler(event: DeploymentState, context: LambdaContext) -> dict[str, Any]:
    settings = Settings.from_env()
    return run_step("SmokeTestModel", lambda: steps.smoke_test(event, settings=settings)).out()
