"""DeploymentFailed: fail the execution with the recorded error; redriven, resume the step
that failed (trainship.deployment_failed)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._common import step_handler
from trainship import deployment_failed


@step_handler("DeploymentFailed", deployment_failed.DeploymentFailedEvent)
def handler(event: deployment_failed.DeploymentFailedEvent,
            context: LambdaContext) -> dict[str, Any]:
    return deployment_failed.deployment_failed(event)
