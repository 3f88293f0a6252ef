"""RecordFailure: the error document for the Fail state; undo a half-done rollout."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._common import step_handler
from trainship import steps
from trainship.cluster.drivers import driver_from_settings
from trainship.config import Settings


@step_handler("RecordFailure", steps.FailureContext)
def handler(event: steps.FailureContext, context: LambdaContext) -> dict[str, str]:
    # the driver is built only if there is a rollout to undo (see steps.record_failure)
    return steps.record_failure(
        event, cluster=lambda: driver_from_settings(Settings.from_env(), event.target))
