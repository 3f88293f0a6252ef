"""RemoveModel: take a model out of service (a delete), through the cluster drivers."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas._common import step_handler
from trainship import removal
from trainship.cluster.drivers import driver_from_settings
from trainship.config import Settings
from trainship.deployments import DeploymentStore
from trainship.image_pins import pins_from_env


@step_handler("RemoveModel", removal.RemoveEvent)
def handler(event: removal.RemoveEvent, context: LambdaContext) -> dict[str, Any]:
    settings = Settings.from_env()
    running = None
    if settings.state_machine_arn:  # the re-check under the lock (see removal.remove_model)
        store = DeploymentStore(boto3.client("stepfunctions"), settings.state_machine_arn)

        def running() -> list[str]:
            return store.running_for(event.request.model_name, exclude=event.deployment_id)

    return removal.remove_model(
        event, settings=settings, pins=pins_from_env(), running=running,
        drivers=lambda target: driver_from_settings(settings, target)).model_dump(mode="json")
