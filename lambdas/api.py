"""The API: POST /deployments, GET /deployments, GET /deployments/{id}[/logs], POST
/deployments/{id}/redrive; GET /models[/{model_name}] (what serves, from MLflow), DELETE
/models/{model_name}, POST /models/{model_name}/rollback, POST /models/{model_name}/token.

Also POST /mlops/deploy, the original API's path (same body shapes), and GET
/openapi.json, the contract (trainship.openapi). Behind API Gateway on AWS; behind
trainship.local.api_server locally, with the same proxy events.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from lambdas._common import logger, metrics, tracer
from trainship import rollback, token_rotation
from trainship.config import Settings
from trainship.deployments import DeploymentStore
from trainship.errors import InvalidRequest, TrainshipError
from trainship.image_pins import pins_from_env
from trainship.models import describe_model, list_models
from trainship.openapi import render, route_list
from trainship.records import DeploymentList, DeploymentRecord, answer
from trainship.redrive import redrive
from trainship.submit import submit, submit_delete

app = APIGatewayRestResolver()


def _store() -> DeploymentStore:
    settings = Settings.from_env()
    return DeploymentStore(boto3.client("stepfunctions"), settings.state_machine_arn,
                           settings.archive_dir)


def _json(status: int, body: BaseModel | dict[str, Any]) -> Response[str]:
    """A JSON answer; a model (the contract, trainship.records) as records.answer dumps it."""
    data = answer(body) if isinstance(body, BaseModel) else body
    return Response(status_code=status, content_type="application/json",
                    body=json.dumps(data, default=str))


@app.exception_handler(TrainshipError)
def _error(exc: TrainshipError) -> Response[str]:
    return _json(exc.http_status, exc.document().model_dump())


ROUTES = route_list()


@app.not_found
def _not_found(exc: NotFoundError) -> Response[str]:
    return _json(404, {"error": "NotFound", "message": f"No route {app.current_event.path}",
                       "details": "", "help": f"Routes: {ROUTES}"})


def _body() -> Any:
    raw = app.current_event.body or ""
    if len(raw) > 300 * 1024:
        raise InvalidRequest("The request body is larger than 300 KiB",
                             details=f"{len(raw)} bytes")
    try:
        return json.loads(raw) if raw else None
    except ValueError as exc:
        raise InvalidRequest("The request body is not valid JSON", details=str(exc)) from exc


@app.post("/deployments")
@app.post("/mlops/deploy")
def create_deployment() -> Response[str]:
    key = app.current_event.headers.get("Idempotency-Key") or app.current_event.headers.get(
        "idempotency-key")
    return _json(202, submit(_body(), store=_store(), idempotency_key=key,
                             targets=Settings.from_env().targets))


@app.get("/deployments")
def list_deployments() -> Response[str]:
    return _json(200, DeploymentList.model_validate({"deployments": _store().recent()}))


@app.get("/deployments/<deployment_id>")
def get_deployment(deployment_id: str) -> Response[str]:
    return _json(200, DeploymentRecord.model_validate(_store().get(deployment_id)))


@app.post("/deployments/<deployment_id>/redrive")
def redrive_deployment(deployment_id: str) -> Response[str]:
    return _json(202, DeploymentRecord.model_validate(redrive(_store(), deployment_id)))


@app.get("/deployments/<deployment_id>/logs")
def get_logs(deployment_id: str) -> Response[str]:
    return Response(status_code=200, content_type="text/plain; charset=utf-8",
                    body=_store().logs(deployment_id))


@app.delete("/models/<model_name>")
def delete_model(model_name: str) -> Response[str]:
    """Take the model out of service (an execution, like a deployment): 202."""
    purge = (app.current_event.query_string_parameters or {}).get("purge", "false")
    if purge not in ("true", "false"):
        raise InvalidRequest(f"purge must be true or false, not {purge!r}")
    settings = Settings.from_env()
    return _json(202, submit_delete(model_name, purge=purge == "true", store=_store(),
                                    tracking_uri=settings.tracking_uri))


@app.get("/models")
def get_models() -> Response[str]:
    settings = Settings.from_env()
    return _json(200, list_models(settings.tracking_uri, settings.model_alias))


@app.get("/models/<model_name>")
def get_model(model_name: str) -> Response[str]:
    settings = Settings.from_env()
    return _json(200, describe_model(settings.tracking_uri, settings.model_alias, model_name))


@app.post("/models/<model_name>/rollback")
def rollback_model(model_name: str) -> Response[str]:
    settings = Settings.from_env()
    return _json(202, rollback.start(_body(), model_name, store=_store(),
                                     tracking_uri=settings.tracking_uri,
                                     alias=settings.model_alias, images=pins_from_env()))


@app.post("/models/<model_name>/token")
def rotate_model_token(model_name: str) -> Response[str]:
    """Issue the model's new inference token (an execution, RotateToken): 202."""
    settings = Settings.from_env()
    return _json(202, token_rotation.start(model_name, store=_store(),
                                           tracking_uri=settings.tracking_uri))


@app.get("/openapi.json")
def get_openapi() -> Response[str]:
    return Response(status_code=200, content_type="application/json", body=render())


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)  # GET /deployments/{id}: tokens
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
