"""SmokeTestModel: send the model's logged input example to /invocations."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._common import step_handler
from trainship import steps
from trainship.config import Settings
from trainship.state import DeploymentState


@step_handler("SmokeTestModel", DeploymentState)
def handler(event: DeploymentState, context: LambdaContext) -> dict[str, Any]:
    return steps.smoke_test(event, settings=Settings.from_env()).out()
