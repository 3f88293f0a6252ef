"""RecordFailure: the error document for the Fail state; undo a half-done rollout."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._common import logger, metrics, run_step, tracer
from trainship import steps
from trainship.cluster import driver_from_settings
from trainship.config import Settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=steps.FailureContext)
def handler(event: steps.FailureContext, context: LambdaContext) -> dict[str, str]:
    driver = driver_from_settings(Settings.from_env())
    return run_step("RecordFailure", lambda: steps.record_failure(event, driver=driver))
