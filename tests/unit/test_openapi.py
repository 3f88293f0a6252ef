"""docs/openapi.json is the generator's output, a valid OpenAPI document, and names exactly
the API function's routes."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any, get_args

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from tests.helpers import REPO
from trainship import openapi, records
from trainship.pipeline import TERMINAL_STATUSES
from trainship.request import DeploymentRequest

CHECKED_IN = REPO / "docs" / "openapi.json"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def test_the_checked_in_document_is_the_generated_one() -> None:
    assert CHECKED_IN.read_text() == openapi.render(), (
        "docs/openapi.json drifted from the models: run "
        "`python -m trainship.openapi > docs/openapi.json`")


def test_the_module_prints_the_document() -> None:
    proc = subprocess.run([sys.executable, "-m", "trainship.openapi"], capture_output=True,
                          text=True, cwd=REPO, check=True)
    assert proc.stdout == openapi.render()


def test_the_document_is_valid_openapi() -> None:
    document = openapi.document()
    assert document["openapi"].startswith("3.")
    validate(document)


@pytest.mark.parametrize("breakage", ["no version", "bad status code", "bad parameter"])
def test_the_validator_refuses_a_broken_document(breakage: str) -> None:
    """The validator above is a real one: the same document, broken, is refused."""
    document = openapi.document()
    operation = document["paths"]["/deployments/{deployment_id}"]["get"]
    if breakage == "no version":
        del document["info"]["version"]
    elif breakage == "bad status code":
        operation["responses"]["2000"] = operation["responses"].pop("200")
    else:
        operation["parameters"][0]["in"] = "body"  # OpenAPI 2's place for a body
    with pytest.raises(OpenAPIValidationError):
        validate(document)


def test_the_paths_are_the_api_functions_routes() -> None:
    from lambdas.api import app

    routes = app.get_openapi_schema().paths or {}
    served = {(path, method) for path, item in routes.items() for method in METHODS
              if getattr(item, method, None) is not None}
    documented = {(path, method) for path, item in openapi.document()["paths"].items()
                  for method in item if method in METHODS}
    assert served == documented


def test_the_request_body_is_the_pydantic_model() -> None:
    schemas = openapi.document()["components"]["schemas"]
    request = schemas["DeploymentRequest"]
    assert set(request["properties"]) == set(DeploymentRequest.model_fields)
    assert request["required"] == ["model_name"]
    assert request["additionalProperties"] is False
    assert set(schemas["ErrorDocument"]["required"]) == {"error", "message", "details", "help"}
    assert set(schemas["ErrorDocument"]["properties"]) == {"error", "message", "details", "help",
                                                           "step"}


def test_every_error_answer_is_the_error_document() -> None:
    def error_refs(operation: dict[str, Any]) -> list[Any]:
        return [answer["content"]["application/json"]["schema"]
                for status, answer in operation["responses"].items()
                if status == "default" or int(status) >= 400]

    operations = [op for item in openapi.document()["paths"].values() for op in item.values()]
    refs = [ref for op in operations if op["operationId"] != "getOpenApi"
            for ref in error_refs(op)]
    assert refs and all(ref == {"$ref": "#/components/schemas/ErrorDocument"} for ref in refs)
    statuses = openapi.document()["paths"]["/deployments"]["post"]["responses"]
    assert "InvalidRequest" in statuses["400"]["description"]
    assert "IdempotencyConflict" in statuses["409"]["description"]


def test_the_statuses_are_the_stores() -> None:
    assert set(get_args(records.ExecutionStatus)) == TERMINAL_STATUSES | {"RUNNING"}


def test_a_new_request_field_reaches_the_document(monkeypatch: pytest.MonkeyPatch) -> None:
    """The drift test above can fail: a field added to the model changes the output."""
    from pydantic import create_model

    grown = create_model("DeploymentRequest", __base__=DeploymentRequest,
                         priority=(int, 0))
    monkeypatch.setattr(openapi, "_SCHEMAS",
                        [(grown, "validation"), *copy.copy(openapi._SCHEMAS[1:])])
    openapi._document.cache_clear()
    try:
        assert "priority" in openapi.document()["components"]["schemas"][
            "DeploymentRequest"]["properties"]
        assert openapi.render() != CHECKED_IN.read_text()
    finally:
        monkeypatch.undo()
        openapi._document.cache_clear()
    assert openapi.render() == CHECKED_IN.read_text()


def test_routes_are_the_operations_of_each_path_item() -> None:
    """A path item may hold parameters/summary/servers beside its operations: only the HTTP
    methods are routes (API Gateway would otherwise get a method named PARAMETERS)."""
    doc = {"paths": {"/a/{id}": {"parameters": [{"name": "id", "in": "path"}],
                                 "summary": "an item", "get": {"x": 1}, "delete": {}},
                     "/b": {"post": {"requestBody": {}}}}}
    assert [(m, p) for m, p, _ in openapi.routes(doc)] == [
        ("GET", "/a/{id}"), ("DELETE", "/a/{id}"), ("POST", "/b")]
    assert openapi.route_list().startswith("POST /deployments, GET /deployments")
