"""DeploymentFailed (trainship.deployment_failed): the recorded error raised as Lambda reports
it, the execution's Cause read back as the error document, and when a redrive resumes."""

from __future__ import annotations

import json
import traceback
from typing import Any

import pytest

from lambdas.deployment_failed import handler
from tests.helpers import LambdaContext
from trainship.deployment_failed import (
    RECORDED_CAUSE_CHARS,
    DeploymentFailedEvent,
    deployment_failed,
    recorded_failure,
)
from trainship.errors import NoModelLogged, document_from_cause
from trainship.local.sfn import lambda_error_cause

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

DOC = NoModelLogged("run r-1 has no model", details="artifacts: []", step="RegisterModel")
RECORDED = {"error": "NoModelLogged", "cause": DOC.document().to_json()}


def state(redrive_count: int = 0, step: str = "RegisterModel") -> dict[str, Any]:
    return {"deployment_id": "d-1", "training": {"build_id": "b-1"},
            "failure": {"Error": "NoModelLogged", "Cause": "..."},
            "failed_step": {"name": step, "redrive_count": redrive_count},
            "recorded": RECORDED}


def raised(event: dict[str, Any]) -> BaseException:
    with pytest.raises(Exception) as failed:
        handler(event, LambdaContext())
    return failed.value


def test_the_first_run_raises_the_recorded_error_under_its_own_name() -> None:
    exc = raised({"state": state(), "redrive_count": 0})
    assert type(exc).__name__ == "NoModelLogged"  # Lambda's errorType: the Error
    cause = lambda_error_cause(exc, traceback.format_tb(exc.__traceback__))
    assert document_from_cause(cause) == DOC.document()  # as recorded, step included


@pytest.mark.parametrize("error", ["Lambda.ServiceException", "CodeBuild.AWSCodeBuildException",
                                   "States.Timeout"])
def test_service_error_names_are_kept(error: str) -> None:
    exc = recorded_failure({"error": error, "cause": json.dumps(
        {"error": error, "message": "outage", "help": "later"})})
    assert type(exc).__name__ == error and json.loads(str(exc))["message"] == "outage"


def test_a_recorded_failure_without_a_document_is_still_an_error_document() -> None:
    exc = recorded_failure({"error": "States.Runtime", "cause": "not json"})
    assert type(exc).__name__ == "States.Runtime"
    doc = document_from_cause(lambda_error_cause(exc, []))
    assert doc is not None and doc.error == "InternalError" and "not json" in doc.details


def test_the_cause_stays_under_step_functions_limit() -> None:
    huge = NoModelLogged("m", details="\"x\"\n" * 20_000).document().to_json()
    exc = recorded_failure({"error": "NoModelLogged", "cause": huge})
    cause = lambda_error_cause(exc, ["  File x, line 1\n"] * 20)
    assert len(cause) < 32_768 and len(json.dumps(str(exc))) <= RECORDED_CAUSE_CHARS
    doc = document_from_cause(cause)
    assert doc is not None and doc.details.endswith("\"x\"\n")  # the tail is kept


def test_a_redrive_resumes_with_the_input_the_step_failed_with() -> None:
    answer = handler({"state": state(), "redrive_count": 1}, LambdaContext())
    assert answer == {"resume_at": "RegisterModel", "state": {
        "deployment_id": "d-1", "training": {"build_id": "b-1"}}}
    after_deploy = deployment_failed(DeploymentFailedEvent(
        state=state(step="SmokeTestModel"), redrive_count=1))
    assert after_deploy["resume_at"] == "DeployModel"


@pytest.mark.parametrize("redrive_count,failed_in,step", [
    (1, 1, "RegisterModel"),  # failed again in this redrive: fail, do not loop
    (3, 0, "ValidateRequest"),  # the request: not resumable
    (1, 0, ""),  # no failed step recorded
])
def test_what_is_not_resumed_fails_with_the_recorded_error(
        redrive_count: int, failed_in: int, step: str) -> None:
    exc = raised({"state": state(failed_in, step), "redrive_count": redrive_count})
    assert type(exc).__name__ == "NoModelLogged"


def test_document_from_cause_reads_both_shapes() -> None:
    text = DOC.document().to_json()
    assert document_from_cause(text) == DOC.document()  # a Fail state's CausePath
    assert document_from_cause(json.dumps({"errorMessage": text})) == DOC.document()
    assert document_from_cause(json.dumps({"errorMessage": "boom"})) is None
    assert document_from_cause("") is None and document_from_cause("[1]") is None
