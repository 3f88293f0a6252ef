"""RegisterModel: check the bound MLflow run logged a model; register a new version."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._common import step_handler
from trainship import steps
from trainship.config import Settings
from trainship.state import DeploymentState


@step_handler("RegisterModel", DeploymentState)
def handler(event: DeploymentState, context: LambdaContext) -> dict[str, Any]:
    return steps.register_model(event, settings=Settings.from_env()).out()
