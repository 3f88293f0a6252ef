"""A deployment that asks for ``debug`` (issue 14) on the local stack: its model's errors
carry the traceback; a deployment that does not ask (the reliability tests' ``serving``
model, the same script) answers the same error without it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import QUICK_SCRIPT, deploy, post_json
from trainship.client import Client

pytestmark = pytest.mark.e2e

# The model has no signature, so two columns instead of four pass MLflow's input checks and
# reach the DecisionTree's predict, which raises a ValueError: a model-side error, a 500.
TWO_COLUMNS = {"inputs": [[5.1, 3.5]]}


def _model_error(result: dict[str, Any]) -> dict[str, Any]:
    status, body = post_json(f"{result['inference_url']}/invocations", TWO_COLUMNS)
    assert status == 500, body
    assert body["exception_type"] == "ValueError", body
    return dict(body)


def test_only_a_deployment_that_asks_for_debug_answers_with_the_traceback(
        api: Client, serving: dict[str, Any]) -> None:
    record = deploy(api, {"model_name": "debugged", "script": QUICK_SCRIPT, "debug": True})
    assert record["status"] == "SUCCEEDED", record.get("error")
    answer = _model_error(record["result"])
    assert "Traceback" in answer["stack_trace"] and "ValueError" in answer["stack_trace"]
    assert "stack_trace" not in _model_error(serving)
