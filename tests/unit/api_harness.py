"""What the API function's unit tests share: the OpenAPI document and the check of an answer
against it, the parsing of the function's proxy response, and Step Functions in moto running
a miniature state machine (not a test module: the test modules import it, never each other)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from jsonschema import Draft202012Validator
from moto import mock_aws

from tests.helpers import SAMPLE_FAILURE, SAMPLE_RESULT
from trainship import openapi

DOCUMENT = openapi.document()
# The pipeline's shape, in miniature: model_name "broken" fails the way RecordFailure does.
MACHINE = {
    "StartAt": "ValidateRequest",
    "States": {
        "ValidateRequest": {"Type": "Choice", "Default": "PromoteModel", "Choices": [
            {"Variable": "$.model_name", "StringEquals": "broken",
             "Next": "DeploymentFailed"}]},
        "PromoteModel": {"Type": "Pass", "Result": SAMPLE_RESULT, "Next": "DeploymentSucceeded"},
        "DeploymentSucceeded": {"Type": "Succeed"},
        "DeploymentFailed": {"Type": "Fail", "Error": "NoModelLogged",
                             "Cause": json.dumps(SAMPLE_FAILURE)},
    },
}


def conforms(path: str, method: str, status: int, body: Any) -> None:
    """The answer matches the OpenAPI document's schema for that route and status."""
    responses = DOCUMENT["paths"][path][method]["responses"]
    answer = responses.get(str(status)) or responses["default"]
    schema = answer["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": DOCUMENT["components"]}).validate(body)


def parse_response(response: dict[str, Any]) -> tuple[int, str, Any]:
    """(status, content type, body: parsed when JSON) of a proxy integration's response."""
    headers = {**(response.get("headers") or {}),
               **{k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}}
    kind = headers.get("Content-Type", "")
    text = response.get("body") or ""
    return (response["statusCode"], kind,
            json.loads(text) if kind.startswith("application/json") else text)


def mocked_state_machine(monkeypatch: pytest.MonkeyPatch, machine: dict[str, Any],
                         config: dict[str, Any]) -> Iterator[Any]:
    """Step Functions in moto with ``machine`` as TrainAndDeploy (STATE_MACHINE_ARN set);
    yields the client. ``config`` is moto's (``execute_state_machine`` runs the ASL)."""
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "TRAINSHIP_TARGETS": "process"
                        }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TRAINSHIP_ARCHIVE_DIR", raising=False)
    with mock_aws(config=config):
        sfn = boto3.client("stepfunctions")
        arn = sfn.create_state_machine(name="TrainAndDeploy", definition=json.dumps(machine),
                                       roleArn="arn:aws:iam::123456789012:role/sfn")
        monkeypatch.setenv("STATE_MACHINE_ARN", arn["stateMachineArn"])
        yield sfn
