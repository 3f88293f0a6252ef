"""The API's request model and its own error answers, derived from trainship's models.

- The POST body model is generated from ``trainship.request.DeploymentRequest``: API
  Gateway models are JSON Schema draft 4 ("Working with models and mapping templates",
  API Gateway developer guide), pydantic emits draft 2020-12, so the few constructs that
  differ are converted here (``anyOf`` with null -> a type list, ``$ref``/``$defs`` ->
  inlined, ``const`` -> ``enum``, numeric ``exclusiveMinimum`` -> boolean form). A field
  added to the pydantic model reaches the API model at the next synth: nothing to keep
  in step by hand. The name rules are in the model too (``pattern``, ``minLength``,
  ``maxLength`` of ``model_name`` and ``experiment_name``, written for draft 4); the field
  validators (their messages, PEP 508 requirements) stay in the API Lambda, which answers
  with a trainship error document.
- Gateway responses: the answers API Gateway gives by itself (a body the model refuses,
  an unsigned request, throttling, its own 5xx) carry trainship's error document
  ``{error, message, details, help}`` instead of ``{"message": ...}``.
"""

from __future__ import annotations

import copy
from typing import Any

from aws_cdk import aws_apigateway as apigw

from trainship import openapi
from trainship.request import DeploymentRequest

DRAFT4 = "http://json-schema.org/draft-04/schema#"
# Keywords draft 4 knows (validation + metadata); anything else pydantic emits is dropped.
_DRAFT4_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern",
    "minItems", "maxItems", "uniqueItems", "description", "default", "anyOf", "oneOf",
    "allOf", "not", "format", "multipleOf", "minProperties", "maxProperties", "title",
}


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    name = ref.rsplit("/", 1)[-1]
    merged = {**copy.deepcopy(defs[name]), **{k: v for k, v in node.items() if k != "$ref"}}
    return _resolve(merged, defs)


def _with_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``X | None``: draft 4 says it with a list of types; an enum keeps its anyOf (a
    null inside a template property is dropped on the way to CloudFormation)."""
    out = {k: v for k, v in schema.items() if not (k == "default" and v is None)}
    if "enum" in out:
        meta: dict[str, Any] = {k: out.pop(k) for k in ("description", "default") if k in out}
        return {"anyOf": [out, {"type": "null"}], **meta}
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        out["type"] = [*kind, "null"]
    return out


def draft4(node: Any, defs: dict[str, Any]) -> Any:
    """One pydantic (2020-12) schema node as draft 4."""
    if isinstance(node, list):
        return [draft4(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = _resolve(node, defs)
    options = node.get("anyOf")
    if isinstance(options, list):
        nulls = [o for o in options if o == {"type": "null"}]
        others = [o for o in options if o != {"type": "null"}]
        if nulls and len(others) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            inner = draft4({**others[0], **{k: v for k, v in rest.items()
                                             if k in ("description", "default")}}, defs)
            return _with_null(inner)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "properties":
            out[key] = {name: draft4(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = draft4(value, defs)
        elif key in ("anyOf", "oneOf", "allOf"):
            out[key] = draft4(value, defs)
        elif key == "title":
            continue  # pydantic titles every property; the model's name says enough
        elif key == "default" and value is None:
            continue  # says nothing, and a null in a template property is dropped anyway
        elif key in _DRAFT4_KEYWORDS:
            out[key] = copy.deepcopy(value)
    return out


def request_schema() -> dict[str, Any]:
    """The POST /deployments (and /mlops/deploy) body model, as API Gateway stores it."""
    generated = DeploymentRequest.model_json_schema()
    defs = generated.pop("$defs", {})
    schema = draft4(generated, defs)
    return {"$schema": DRAFT4, "title": "DeploymentRequest", **schema}


# --- API Gateway's own answers ----------------------------------------------------------

# Gateway response templates are not VTL: simple $context substitution only
# ("x-amazon-apigateway-gateway-responses.responseTemplates object"). So the JSON is
# built from values that are JSON already: $context.error.messageString is documented as
# the quoted (JSON string) form of $context.error.message; the request id is a UUID.
# $context.error.validationErrorString is NOT used: it is the validator's raw text, with
# unescaped double quotes (e.g. `object has missing required properties (["model_name"])`),
# and a template cannot escape it, so the body would not parse as JSON. details names
# the fields instead; the API function's own validation (the same pydantic model) gives
# field-by-field messages for bodies that pass the gateway's model.
HELP_ROUTES = openapi.route_list()


def _document(error: str, details: str, help_text: str) -> str:
    return ('{"error": "' + error + '", "message": $context.error.messageString, '
            '"details": "' + details + '", "help": "' + help_text + '", '
            '"request_id": "$context.requestId"}')


# response type -> (status code or None for API Gateway's own, error name, details, help)
GATEWAY_RESPONSES: dict[str, tuple[str | None, str, str, str]] = {
    "BAD_REQUEST_BODY": (
        "400", "InvalidRequest",
        "API Gateway's request validator refused the body against the DeploymentRequest "
        "model: a required field missing (model_name; script, script_base64 or "
        "script_content), an unknown field, a wrong type or a value out of range",
        "The body does not match the DeploymentRequest model (docs/api.md): check the "
        "field names and types. Example: {\\\"model_name\\\": \\\"iris-classifier\\\", "
        "\\\"script\\\": \\\"import mlflow ...\\\"}"),
    "ACCESS_DENIED": (
        "403", "AccessDenied", "$context.error.responseType",
        "The caller may not invoke this API: grant execute-api:Invoke on it to the "
        "identity that signs the request (docs/deploy-to-aws.md)."),
    "MISSING_AUTHENTICATION_TOKEN": (
        "403", "MissingAuthenticationToken", "$context.error.responseType",
        "Either the path or method does not exist (routes: " + HELP_ROUTES + ") or the "
        "request is not SigV4-signed: use trainship deploy --api URL or curl --aws-sigv4."),
    "THROTTLED": (
        "429", "Throttled", "$context.error.responseType",
        "Too many requests for the stage's throttling limits (trainship:apiThrottleRate / "
        "apiThrottleBurst): retry with backoff."),
    "DEFAULT_4XX": (
        None, "RequestRejected", "$context.error.responseType",
        "API Gateway refused the request before trainship saw it; the responseType in "
        "details names why (see API Gateway's gateway response types)."),
    "DEFAULT_5XX": (
        None, "GatewayError", "$context.error.responseType",
        "API Gateway could not reach trainship's API function; retry, and if it persists "
        "read the API function's logs with the request id."),
}


def gateway_templates() -> dict[str, dict[str, str]]:
    """response type -> {content type: body template}."""
    return {kind: {"application/json": _document(error, details, help_text)}
            for kind, (_, error, details, help_text) in GATEWAY_RESPONSES.items()}


def add_request_model(api: apigw.RestApi) -> apigw.Model:
    """The DeploymentRequest model on the API, its schema exactly request_schema()."""
    model = api.add_model("DeploymentRequest", content_type="application/json",
                          schema=apigw.JsonSchema(schema=apigw.JsonSchemaVersion.DRAFT4,
                                                  type=apigw.JsonSchemaType.OBJECT))
    cfn_model = model.node.default_child
    assert isinstance(cfn_model, apigw.CfnModel)
    cfn_model.add_property_override("Schema", request_schema())
    # CDK salts the deployment's logical id with the model's construct props, not with the
    # override: without this a changed schema would not redeploy the stage.
    if api.latest_deployment is not None:
        api.latest_deployment.add_to_logical_id({"DeploymentRequest": request_schema()})
    return model


def add_gateway_responses(api: apigw.RestApi) -> None:
    for kind, template in gateway_templates().items():
        api.add_gateway_response(f"{kind.title().replace('_', '')}Response",
                                 type=apigw.ResponseType.of(kind),
                                 status_code=GATEWAY_RESPONSES[kind][0], templates=template)
