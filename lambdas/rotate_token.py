"""RotateToken: issue a model's new inference token (a rotation), through its cluster driver."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._common import step_handler
from trainship import token_rotation
from trainship.cluster.drivers import driver_from_settings
from trainship.config import Settings
from trainship.deployments import DeploymentStore


@step_handler("RotateToken", token_rotation.RotateEvent)
def handler(event: token_rotation.RotateEvent, context: LambdaContext) -> dict[str, Any]:
    settings = Settings.from_env()
    running = None
    if settings.state_machine_arn:  # the re-check under the lock (token_rotation.rotate_token)
        store = DeploymentStore(boto3.client("stepfunctions"), settings.state_machine_arn)

        def running() -> list[str]:
            return store.running_for(event.request.model_name, exclude=event.deployment_id)

    return token_rotation.rotate_token(
        event, settings=settings, running=running,
        drivers=lambda target: driver_from_settings(settings, target)).model_dump(mode="json")
