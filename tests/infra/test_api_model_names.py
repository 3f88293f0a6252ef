"""Issue 11: the name rules survive the draft 4 conversion, so API Gateway's model refuses
what the API Lambda refuses (and accepts the names MLflow users write)."""

from __future__ import annotations

import pytest
from jsonschema import Draft4Validator

from infra.api_model import request_schema
from trainship.errors import InvalidRequest
from trainship.request import parse_request


@pytest.fixture(scope="module")
def validator() -> Draft4Validator:
    schema = request_schema()
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


@pytest.mark.parametrize("fields", [
    {"model_name": "test_model"}, {"model_name": "customer_churn"}, {"model_name": "Iris.v2"},
    {"model_name": "a" * 128}, {"model_name": "m", "experiment_name": "team/churn (v2)"},
])
def test_good_names_pass_both(validator: Draft4Validator, fields: dict[str, str]) -> None:
    body = {"script": "import mlflow", **fields}
    parse_request(body)
    assert not list(validator.iter_errors(body))


@pytest.mark.parametrize("fields", [
    {"model_name": ""}, {"model_name": "test model"}, {"model_name": "a/b"},
    {"model_name": "a..b"}, {"model_name": ".."}, {"model_name": "a\x00b"},
    {"model_name": "a" * 129}, {"model_name": "m", "experiment_name": "a\x00b"},
    {"model_name": "m", "experiment_name": "line\nbreak"},
    {"model_name": "m", "experiment_name": ""}, {"model_name": "m", "experiment_name": "e" * 201},
])
def test_bad_names_are_refused_by_both(validator: Draft4Validator,
                                       fields: dict[str, str]) -> None:
    body = {"script": "import mlflow", **fields}
    with pytest.raises(InvalidRequest):
        parse_request(body)
    assert list(validator.iter_errors(body)), body
