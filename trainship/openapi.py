"""The API's contract as an OpenAPI 3.1 document, generated from the pydantic models.

The request body is ``trainship.request.DeploymentRequest``, a finished deployment's
``result`` is ``trainship.state.DeploymentResult`` and every error answer is
``trainship.errors.ErrorDocument``; the other answers (the 202, the list, the status
record) are the models of ``trainship.records``. pydantic writes the schemas (JSON Schema
2020-12, the dialect of OpenAPI 3.1); this module only lays out the paths.

``python -m trainship.openapi > docs/openapi.json`` writes the checked-in copy;
tests/unit/test_openapi.py fails when that copy and this generator differ, validates the
document with openapi-spec-validator, and checks that the paths are exactly the API
function's routes. tests/unit/test_api_routes.py checks the handler's actual answers
against these schemas. The API serves the document at ``GET /openapi.json``.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from trainship.errors import (
    DeploymentInProgress,
    DeploymentNotFound,
    DeploymentNotRedrivable,
    ErrorDocument,
    IdempotencyConflict,
    ImageNotFound,
    InvalidRequest,
    ModelNotFound,
    ModelVersionNotFound,
    RegistryUnavailable,
    TargetNotEnabled,
    TrainshipError,
    TransientError,
    VersionAlreadyLive,
    VersionNeverServed,
)
from trainship.records import (
    Accepted,
    DeploymentList,
    DeploymentRecord,
    ModelDetail,
    ModelList,
)
from trainship.request import DeploymentRequest, RollbackRequest

OPENAPI_VERSION = "3.1.0"
# The version of the contract (paths and shapes), not of the package.
API_VERSION = "1"

# The error names each route answers with itself (API Gateway adds its own: 403, 429, ...).
CREATE_ERRORS: tuple[type[TrainshipError], ...] = (InvalidRequest, TargetNotEnabled,
                                                   IdempotencyConflict)
READ_ERRORS: tuple[type[TrainshipError], ...] = (DeploymentNotFound,)
REDRIVE_ERRORS: tuple[type[TrainshipError], ...] = (DeploymentNotFound,
                                                    DeploymentNotRedrivable)
DELETE_ERRORS: tuple[type[TrainshipError], ...] = (InvalidRequest, ModelNotFound,
                                                   DeploymentInProgress)
MODELS_ERRORS: tuple[type[TrainshipError], ...] = (RegistryUnavailable,)
MODEL_ERRORS: tuple[type[TrainshipError], ...] = (ModelNotFound, RegistryUnavailable)
TOKEN_ERRORS: tuple[type[TrainshipError], ...] = (ModelNotFound, DeploymentInProgress,
                                                  TransientError)
ROLLBACK_ERRORS: tuple[type[TrainshipError], ...] = (
    InvalidRequest, ModelNotFound, ModelVersionNotFound, VersionNeverServed,
    VersionAlreadyLive, DeploymentInProgress, ImageNotFound, TransientError)

_SCHEMAS: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
    (DeploymentRequest, "validation"),
    (RollbackRequest, "validation"),
    (Accepted, "serialization"),
    (DeploymentList, "serialization"),
    (DeploymentRecord, "serialization"),
    (ErrorDocument, "serialization"),
    (ModelList, "serialization"),
    (ModelDetail, "serialization"),
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def _errors(classes: tuple[type[TrainshipError], ...]) -> dict[str, Any]:
    """Responses by status code, each naming the error names it carries."""
    by_status: dict[int, list[str]] = {}
    for cls in classes:
        by_status.setdefault(cls.http_status, []).append(cls.__name__)
    answers: dict[str, Any] = {
        str(status): {"description": "an error document: " + ", ".join(names),
                      "content": _json_content("ErrorDocument")}
        for status, names in sorted(by_status.items())}
    answers["default"] = {
        "description": "an error document (a crash is InternalError; API Gateway's own "
                       "answers, such as 403 and 429, use the same document)",
        "content": _json_content("ErrorDocument")}
    return answers


_DEPLOYMENT_ID = {"name": "deployment_id", "in": "path", "required": True,
                  "schema": {"type": "string"}, "description": "from the 202's deployment_id"}

_MODEL_NAME = {"name": "model_name", "in": "path", "required": True,
               "schema": {"type": "string"},
               "description": "the registered model's name, as deployed (e.g. test_model)"}


def _create(operation_id: str, summary: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                        "description": "the same key and body give the same deployment "
                                       "(or the body's idempotency_key)"}],
        "requestBody": {"required": True, "content": _json_content("DeploymentRequest")},
        "responses": {"202": {"description": "the execution started",
                              "content": _json_content("Accepted")},
                      **_errors(CREATE_ERRORS)},
    }


def _paths() -> dict[str, Any]:
    return {
        "/deployments": {
            "post": _create("createDeployment", "Start a deployment"),
            "get": {"operationId": "listDeployments", "summary": "Recent deployments",
                    "responses": {"200": {"description": "newest first",
                                          "content": _json_content("DeploymentList")},
                                  **_errors(())}},
        },
        "/mlops/deploy": {
            "post": _create("deploy", "Start a deployment (the original API's path)"),
        },
        "/deployments/{deployment_id}": {
            "get": {"operationId": "getDeployment", "summary": "A deployment's status record",
                    "parameters": [_DEPLOYMENT_ID],
                    "responses": {"200": {"description": "the status record",
                                          "content": _json_content("DeploymentRecord")},
                                  **_errors(READ_ERRORS)}},
        },
        "/deployments/{deployment_id}/redrive": {
            "post": {"operationId": "redriveDeployment",
                     "summary": "Resume a failed deployment from the step that failed "
                                "(Step Functions RedriveExecution): same input, the steps "
                                "that succeeded do not run again",
                     "parameters": [_DEPLOYMENT_ID],
                     "responses": {"202": {"description": "redriven: the status record, "
                                                          "RUNNING again",
                                           "content": _json_content("DeploymentRecord")},
                                   **_errors(REDRIVE_ERRORS)}},
        },
        "/deployments/{deployment_id}/logs": {
            "get": {"operationId": "getDeploymentLogs",
                    "summary": "The training and image build logs, then the error document",
                    "parameters": [_DEPLOYMENT_ID],
                    "responses": {"200": {"description": "plain text",
                                          "content": {"text/plain": {
                                              "schema": {"type": "string"}}}},
                                  **_errors(READ_ERRORS)}},
        },
        "/models": {
            "get": {"operationId": "listModels",
                    "summary": "The models that serve: live version, URL, image, since when",
                    "responses": {"200": {"description": "by model name",
                                          "content": _json_content("ModelList")},
                                  **_errors(MODELS_ERRORS)}},
        },
        "/models/{model_name}": {
            "get": {"operationId": "getModel",
                    "summary": "A model, what of it serves, and every registered version "
                               "with the periods it served",
                    "parameters": [_MODEL_NAME],
                    "responses": {"200": {"description": "live_version null: it serves "
                                                         "nothing",
                                          "content": _json_content("ModelDetail")},
                                  **_errors(MODEL_ERRORS)}},
            "delete": {"operationId": "deleteModel",
                       "summary": "Take a model out of service (an execution like a "
                                  "deployment: follow it at status_url); its registered "
                                  "versions and images stay unless purge=true",
                       "parameters": [
                           _MODEL_NAME,
                           {"name": "purge", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["true", "false"],
                                       "default": "false"},
                            "description": "also delete the registered model (every "
                                           "version) and its images"}],
                       "responses": {"202": {"description": "the delete started; its "
                                                            "result is a RemovalResult",
                                             "content": _json_content("Accepted")},
                                     **_errors(DELETE_ERRORS)}},
        },
        "/models/{model_name}/rollback": {
            "post": {"operationId": "rollbackModel",
                     "summary": "Serve an earlier registered version again from its image "
                                "(no training, no build), through the state machine: "
                                "rollout checks, smoke test, undone on failure",
                     "parameters": [_MODEL_NAME],
                     "requestBody": {"required": True,
                                     "content": _json_content("RollbackRequest")},
                     "responses": {"202": {"description": "the rollback's execution started",
                                           "content": _json_content("Accepted")},
                                   **_errors(ROLLBACK_ERRORS)}},
        },
        "/models/{model_name}/token": {
            "post": {"operationId": "rotateModelToken",
                     "summary": "Issue the model's new inference token (an execution: its "
                                "result, a TokenRotation, carries the token once); the old "
                                "token stops working. A model whose URL is open fails the "
                                "execution with AuthNotEnabled",
                     "parameters": [_MODEL_NAME],
                     "responses": {"202": {"description": "the rotation's execution started",
                                           "content": _json_content("Accepted")},
                                   **_errors(TOKEN_ERRORS)}},
        },
        "/openapi.json": {
            "get": {"operationId": "getOpenApi", "summary": "This document",
                    "responses": {"200": {"description": "the OpenAPI document",
                                          "content": {"application/json": {
                                              "schema": {"type": "object"}}}}}},
        },
    }


@cache
def _document() -> str:
    _, schemas = models_json_schema(_SCHEMAS, ref_template="#/components/schemas/{model}")
    # Every error answer carries all four (the API's, API Gateway's templates, the Fail
    # state's cause); only ``step`` may be missing. The model keeps defaults for building.
    schemas["$defs"]["ErrorDocument"]["required"] = ["error", "message", "details", "help"]
    document = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "trainship",
            "version": API_VERSION,
            "description": "POST a training script, get back a live inference URL. "
                           "Field by field: docs/api.md.",
        },
        "paths": _paths(),
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"sigv4": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "On AWS: API Gateway with IAM authorisation, requests signed "
                               "with SigV4 (execute-api). The local API does not check it.",
                "x-amazon-apigateway-authtype": "awsSigv4"}},
        },
        "security": [{"sigv4": []}],
    }
    return json.dumps(document, indent=2) + "\n"


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy)."""
    parsed: dict[str, Any] = json.loads(_document())
    return parsed


# the keys of an OpenAPI path item that are operations (it may also hold parameters,
# summary, description, servers)
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def routes(doc: dict[str, Any] | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation of the document, in its order: what
    the API function, API Gateway's resources and the 404 help list."""
    paths = (doc if doc is not None else document())["paths"]
    return [(method.upper(), path, operation) for path, item in paths.items()
            for method, operation in item.items() if method in HTTP_METHODS]


def takes_deployment_request(operation: dict[str, Any]) -> bool:
    """Whether the operation's body is a DeploymentRequest (API Gateway validates those
    against its model before the function; other bodies the function checks itself)."""
    content = (operation.get("requestBody") or {}).get("content") or {}
    return bool((content.get("application/json") or {}).get("schema") ==
                _ref("DeploymentRequest"))


def route_list() -> str:
    """The routes as a 404's help text names them: ``POST /deployments, ...``."""
    return ", ".join(f"{method} {path}" for method, path, _ in routes())


def render() -> str:
    """The document as docs/openapi.json holds it."""
    return _document()


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
