"""Issue 10 item 8: the API's request model is trainship's DeploymentRequest (no drift),
and API Gateway's own error answers are trainship error documents."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator

from infra.api_model import GATEWAY_RESPONSES, request_schema
from tests.infra.helpers import Synth
from trainship.request import DeploymentRequest

REPO = Path(__file__).resolve().parents[2]


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def template_schema(template: dict[str, Any]) -> dict[str, Any]:
    models = list(_resources(template, "AWS::ApiGateway::Model").values())
    assert len(models) == 1
    schema: dict[str, Any] = models[0]["Properties"]["Schema"]
    return schema


def test_every_pydantic_field_is_in_the_api_model(synthesized: Synth) -> None:
    _, template, _ = synthesized
    schema = template_schema(template)
    assert set(DeploymentRequest.model_fields) == set(schema["properties"])
    assert "target" in schema["properties"]  # the hand-written model had drifted here
    required = [n for n, f in DeploymentRequest.model_fields.items() if f.is_required()]
    assert schema["required"] == required
    assert schema["additionalProperties"] is False  # extra="forbid"


def test_the_template_model_is_the_generated_one(synthesized: Synth) -> None:
    _, template, _ = synthesized
    assert template_schema(template) == request_schema()
    assert template_schema(template)["$schema"] == "http://json-schema.org/draft-04/schema#"


def test_the_model_is_draft4_and_agrees_with_pydantic(synthesized: Synth) -> None:
    """API Gateway validates with JSON Schema draft 4: the model must be valid draft 4
    (a 2020-12 numeric exclusiveMinimum or an anyOf-null would not mean the same) and
    accept every body pydantic accepts, refusing what pydantic refuses by type."""
    _, template, _ = synthesized
    schema = template_schema(template)
    Draft4Validator.check_schema(schema)
    validator = Draft4Validator(schema)
    accepted = [
        {"model_name": "churn", "script": "import mlflow"},
        {"model_name": "churn", "script_base64": "aW1wb3J0", "target": "kubernetes",
         "requirements": ["xgboost==2.1.4"], "timeout_seconds": 7200, "replicas": 2,
         "resources": {"cpu": "1", "memory": "2Gi"}, "idempotency_key": "k1"},
        {"model_name": "churn", "script_content": "aW1wb3J0", "timeout": 60,
         "experiment_name": None, "target": None, "resources": None},
    ]
    for body in accepted:
        DeploymentRequest.model_validate(body)
        assert not list(validator.iter_errors(body)), body
    refused = [
        {"script": "x"},                                     # model_name missing
        {"model_name": "churn", "bogus": 1},                 # unknown field
        {"model_name": "churn", "timeout_seconds": 0},       # below the minimum
        {"model_name": "churn", "timeout_seconds": 7201},    # above the maximum
        {"model_name": "churn", "target": "lambda"},         # not an enabled target name
        {"model_name": "churn", "replicas": "two"},          # wrong type
        {"model_name": "churn", "resources": {"gpu": "1"}},  # unknown nested field
    ]
    for body in refused:
        with pytest.raises(ValueError):
            DeploymentRequest.model_validate(body)
        assert list(validator.iter_errors(body)), body


def _render(template: str, values: dict[str, str]) -> str:
    # API Gateway's simple substitution: longest variable names first
    for name in sorted(values, key=len, reverse=True):
        template = template.replace(name, values[name])
    assert "$context" not in template, template
    return template


@pytest.mark.parametrize("kind", ["BAD_REQUEST_BODY", "ACCESS_DENIED",
                                  "MISSING_AUTHENTICATION_TOKEN", "THROTTLED", "DEFAULT_4XX",
                                  "DEFAULT_5XX"])
def test_gateway_responses_are_error_documents(synthesized: Synth, kind: str) -> None:
    _, template, _ = synthesized
    responses = {r["Properties"]["ResponseType"]: r["Properties"]
                 for r in _resources(template, "AWS::ApiGateway::GatewayResponse").values()}
    response = responses[kind]
    values = {  # as API Gateway substitutes them; messageString is already quoted
        "$context.error.messageString": json.dumps('Invalid request body'),
        # the validator's real text has unescaped quotes: it must not reach the body
        "$context.error.validationErrorString":
            '[object has missing required properties (["model_name"])]',
        "$context.error.responseType": kind,
        "$context.requestId": "3f1c2a9e-0000-4000-8000-000000000000",
    }
    body = json.loads(_render(response["ResponseTemplates"]["application/json"], values))
    assert {"error", "message", "details", "help"} <= set(body)
    assert body["message"] == "Invalid request body" and body["help"]
    expected_status = GATEWAY_RESPONSES[kind][0]
    assert response.get("StatusCode") == expected_status
    if kind == "BAD_REQUEST_BODY":
        assert body["error"] == "InvalidRequest" and "model_name" in body["details"]
    # every error name a caller can get is documented
    troubleshooting = (REPO / "docs" / "troubleshooting.md").read_text()
    assert re.search(rf"`{body['error']}`", troubleshooting), body["error"]


def test_a_changed_request_model_redeploys_the_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schema is a property override; the stage's Deployment must still change with it,
    or API Gateway keeps validating against the old model."""
    import aws_cdk as cdk
    from aws_cdk import aws_apigateway as apigw

    from infra import api_model

    def deployment_id(schema: dict[str, object]) -> str:
        monkeypatch.setattr(api_model, "request_schema", lambda: schema)
        stack = cdk.Stack(cdk.App(), "Probe")
        api = apigw.RestApi(stack, "Api")
        api.root.add_method("GET")
        api_model.add_request_model(api)
        assert api.latest_deployment is not None
        return str(stack.resolve(api.latest_deployment.deployment_id))

    base = api_model.request_schema()
    changed = {**base, "properties": {**base["properties"], "extra": {"type": "string"}}}
    assert deployment_id(base) == deployment_id(dict(base))
    assert deployment_id(base) != deployment_id(changed)


def test_the_model_takes_rollout_as_a_word_or_an_object() -> None:
    """Issue 15: ``"rollout": "canary"`` is short for ``{"strategy": "canary"}``. The word is
    turned into the object by a validator, which JSON schema does not see: the field's
    schema says both (anyOf: the word, the object, null), or the gateway's draft-4 model
    would refuse the short form before the API sees it. The canary's rules that need
    code (steps increasing, the last 100) stay in the API Lambda (InvalidRequest)."""
    schema = request_schema()
    Draft4Validator.check_schema(schema)
    validator = Draft4Validator(schema)
    base = {"model_name": "churn", "script": "import mlflow"}
    accepted: list[object] = [
        "canary", "all-at-once", None, {}, {"strategy": "all-at-once"},
        {"strategy": "canary", "steps": [10, 50, 100], "interval_seconds": 60,
         "max_error_rate": 0.05, "max_p99_ms": 250, "min_requests": 5,
         "no_traffic": "rollback"},
        {"max_p99_ms": None},
    ]
    for rollout in accepted:
        body = {**base, "rollout": rollout}
        DeploymentRequest.model_validate(body)
        assert not list(validator.iter_errors(body)), rollout
    refused: list[object] = [
        "blue-green", 5, ["canary"], {"strategy": "linear"}, {"steps": "10,50,100"},
        {"interval_seconds": 0}, {"max_error_rate": 1.5}, {"max_p99_ms": 0},
        {"min_requests": 0}, {"no_traffic": "wait"}, {"bogus": 1},
    ]
    for rollout in refused:
        body = {**base, "rollout": rollout}
        with pytest.raises(ValueError):
            DeploymentRequest.model_validate(body)
        assert list(validator.iter_errors(body)), rollout
