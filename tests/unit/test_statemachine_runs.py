"""The rendered ASL file run by a real ASL interpreter (moto's, as the local stack runs it):
the failure path and its redrive, the Route state, the rollback path, the token
rotation's and the canary loop. Every Task is
routed to a stand-in (``Pipeline``) except RecordFailure and DeploymentFailed, the real
handlers."""

from __future__ import annotations

import json

import pytest

from tests.unit.asl_pipeline import Pipeline
from trainship.deployments.store import record_of
from trainship.errors import (
    AuthNotEnabled,
    CanaryFailed,
    DeploymentNotRedrivable,
    document_from_cause,
)
from trainship.redrive import check_redrivable

# --- the failure path on a real ASL interpreter (moto's, as the local stack runs it) --------



pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def test_a_failed_build_image_is_recorded_then_redriven_without_retraining(
        pipeline: Pipeline) -> None:
    pipeline.failing["BuildImage"] = 1
    arn = pipeline.start({"model_name": "iris"})
    failed = pipeline.wait(arn)
    assert failed["status"] == "FAILED" and failed["error"] == "ImageBuildFailed"
    record = record_of(failed, pipeline.history(arn))
    assert record["current_step"] == "DeploymentFailed"
    assert record["error"]["error"] == "ImageBuildFailed"  # the document, from the Cause
    assert record["error"]["step"] == "BuildImage" and record["error"]["help"]
    assert pipeline.entered(arn)[-4:] == ["BuildImage", "BuildImageCaught", "RecordFailure",
                                          "DeploymentFailed"]
    check_redrivable(record)  # trainship redrive accepts it

    pipeline.client.redrive_execution(executionArn=arn)
    done = pipeline.wait(arn)
    assert done["status"] == "SUCCEEDED", done
    states = pipeline.entered(arn)
    assert states[states.index("ExecutionRedriven"):] == [
        "ExecutionRedriven", "DeploymentFailed", "ResumeFailedStep", "BuildImage",
        "DeployModel", "WaitForRollout", "CheckRollout", "IsRolloutDone", "SmokeTestModel",
        "ChooseRollout", "PromoteModel", "DeploymentSucceeded"]
    assert len(pipeline.called("TrainModel")) == 1  # no retraining
    first, again = pipeline.called("BuildImage")
    assert first == again  # the same input as the attempt that failed
    deployed = json.loads(done["output"])["deployed"]
    assert not {"failure", "failed_step", "recorded", "resume_at"} & set(deployed)


def test_a_step_that_fails_again_after_a_redrive_fails_and_can_be_redriven_again(
        pipeline: Pipeline) -> None:
    pipeline.failing["CheckRollout"] = 2
    arn = pipeline.start({"model_name": "iris"})
    assert pipeline.wait(arn)["error"] == "RolloutFailed"
    pipeline.client.redrive_execution(executionArn=arn)
    again = pipeline.wait(arn)  # no loop: the new failure carries the redrive's count
    assert again["status"] == "FAILED" and again["error"] == "RolloutFailed"
    assert record_of(again, pipeline.history(arn))["error"]["step"] == "CheckRollout"
    pipeline.client.redrive_execution(executionArn=arn)
    assert pipeline.wait(arn)["status"] == "SUCCEEDED"
    states = pipeline.entered(arn)
    assert states.count("ExecutionRedriven") == 2 and states.count("DeploymentFailed") == 4
    # a failed rollout resumes at DeployModel (RecordFailure removed the rollout), with the
    # state CheckRollout had, less what the failure path added
    deploys = pipeline.called("DeployModel")
    assert len(deploys) == 3 and deploys[1]["rollout"]["attempt"] == 1
    assert not {"failure", "failed_step", "recorded"} & set(deploys[1])
    assert len(pipeline.called("TrainModel")) == len(pipeline.called("BuildImage")) == 1


def test_a_failed_request_fails_the_same_way_when_redriven(pipeline: Pipeline) -> None:
    pipeline.failing["ValidateRequest"] = 1
    arn = pipeline.start({"model_name": "iris"})
    failed = pipeline.wait(arn)
    assert failed["error"] == "InvalidRequest"
    record = record_of(failed, pipeline.history(arn))
    with pytest.raises(DeploymentNotRedrivable, match="ValidateRequest"):
        check_redrivable(record)
    # Step Functions itself accepts the redrive: DeploymentFailed raises the error again
    pipeline.client.redrive_execution(executionArn=arn)
    again = pipeline.wait(arn)
    assert again["status"] == "FAILED" and again["error"] == "InvalidRequest"
    assert record_of(again, pipeline.history(arn))["error"] == record["error"]
    assert len(pipeline.called("ValidateRequest")) == 1


def test_a_rollback_skips_training_and_the_build(pipeline: Pipeline) -> None:
    arn = pipeline.start({"action": "rollback", "model_name": "test_model", "version": "1"})
    described = pipeline.wait(arn)
    assert described["status"] == "SUCCEEDED", described
    assert pipeline.entered(arn) == [
        "Route", "PrepareRollback", "DeployModel", "WaitForRollout", "CheckRollout",
        "IsRolloutDone", "SmokeTestModel", "ChooseRollout", "PromoteModel",
        "DeploymentSucceeded"]
    assert json.loads(described["output"])["version"] == "1"


def test_a_failed_rollback_is_recorded_and_undone_like_a_deployment(
        pipeline: Pipeline) -> None:
    pipeline.failing["SmokeTestModel"] = 1
    arn = pipeline.start({"action": "rollback", "model_name": "test_model", "version": "1"})
    described = pipeline.wait(arn)
    assert described["status"] == "FAILED" and described["error"] == "RolloutFailed"
    assert pipeline.entered(arn)[-4:] == ["SmokeTestModel", "SmokeTestModelCaught",
                                          "RecordFailure", "DeploymentFailed"]
    assert pipeline.called("RecordFailure")[0]["rollback"] == {"replaced_version": "2"}


def test_no_action_is_a_deployment(pipeline: Pipeline) -> None:
    for body in ({"model_name": "m", "script": "x"}, {"action": "something", "model_name": "m"}):
        pipeline.failing["ValidateRequest"] = 1
        arn = pipeline.start(body)
        assert pipeline.wait(arn)["status"] == "FAILED"
        assert pipeline.entered(arn)[:2] == ["Route", "ValidateRequest"]  # it refuses the rest
        assert "PrepareRollback" not in pipeline.entered(arn)


def test_a_token_rotation_goes_route_rotate_token_succeed(pipeline: Pipeline) -> None:
    arn = pipeline.start({"action": "rotate-token", "model_name": "auth_model"})
    described = pipeline.wait(arn)
    assert described["status"] == "SUCCEEDED", described
    assert pipeline.entered(arn) == ["Route", "RotateToken", "TokenRotated"]
    # RotateToken gets the input and the execution's name (token_rotation.RotateEvent)
    assert pipeline.called("RotateToken") == [
        {"request": {"action": "rotate-token", "model_name": "auth_model"},
         "deployment_id": "d-1"}]
    output = json.loads(described["output"])
    assert output["action"] == "rotate-token" and output["inference_token"] == "tsk_new"
    assert not pipeline.called("ValidateRequest") and not pipeline.called("DeployModel")


def test_a_refused_rotation_is_recorded_undoes_nothing_and_redrives_at_rotate_token(
        pipeline: Pipeline) -> None:
    pipeline.failing["RotateToken"] = 1
    pipeline.errors["RotateToken"] = AuthNotEnabled("auth_model's URL is open",
                                                    step="RotateToken")
    arn = pipeline.start({"action": "rotate-token", "model_name": "auth_model"})
    described = pipeline.wait(arn)
    assert described["status"] == "FAILED" and described["error"] == "AuthNotEnabled"
    assert pipeline.entered(arn) == ["Route", "RotateToken", "RotateTokenCaught",
                                     "RecordFailure", "DeploymentFailed"]
    document = document_from_cause(described["cause"])
    assert document is not None and document.step == "RotateToken"
    assert "--auth token" in document.help
    # the real RecordFailure: a rotation's state has no rollout, nothing to undo
    assert "rollout" not in pipeline.called("RecordFailure")[0]
    check_redrivable(record_of(described, pipeline.history(arn)))
    pipeline.client.redrive_execution(executionArn=arn)
    again = pipeline.wait(arn)
    assert again["status"] == "SUCCEEDED", again
    assert pipeline.entered(arn)[-3:] == ["ResumeFailedStep", "RotateToken", "TokenRotated"]
    assert len(pipeline.called("RotateToken")) == 2


# --- the canary loop ---------------------------------------------------------------------

CANARY_STEP = ["ShiftTraffic", "WaitForCanary", "JudgeCanary", "CanaryVerdict"]


def test_a_canary_loops_step_by_step_then_promotes(pipeline: Pipeline) -> None:
    pipeline.canary_verdicts = ["next", "next", "promote"]
    arn = pipeline.start({"model_name": "m", "script": "x"})
    described = pipeline.wait(arn)
    assert described["status"] == "SUCCEEDED", described
    entered = pipeline.entered(arn)
    start = entered.index("ChooseRollout")
    assert entered[start - 1] == "SmokeTestModel"
    assert entered[start:] == ["ChooseRollout", *CANARY_STEP * 3, "PromoteModel",
                               "DeploymentSucceeded"]
    # each step's state reaches the next: the Wait read $.canary.interval_seconds
    assert [p["canary"]["step"] for p in pipeline.called("ShiftTraffic")] == [0, 1, 2]
    assert pipeline.called("PromoteModel")[0]["canary"]["action"] == "promote"
    waits = [e for e in pipeline.history(arn) if e["type"] == "WaitStateEntered"]
    assert len([w for w in waits if w["stateEnteredEventDetails"]["name"]
                == "WaitForCanary"]) == 3


def test_without_a_canary_the_smoke_test_leads_to_promote(pipeline: Pipeline) -> None:
    arn = pipeline.start({"model_name": "m", "script": "x"})
    assert pipeline.wait(arn)["status"] == "SUCCEEDED"
    entered = pipeline.entered(arn)
    assert entered[entered.index("SmokeTestModel"):] == [
        "SmokeTestModel", "ChooseRollout", "PromoteModel", "DeploymentSucceeded"]
    assert not pipeline.called("ShiftTraffic") and not pipeline.called("JudgeCanary")


def test_a_rolled_back_canary_is_recorded_and_redriven_from_deploy_model(
        pipeline: Pipeline) -> None:
    pipeline.canary_verdicts = ["next", "promote"]
    pipeline.failing["JudgeCanary"] = 1
    pipeline.errors["JudgeCanary"] = CanaryFailed(
        "m v2 was rolled back at canary step 1 of 2", details='{"verdict": {}}',
        step="JudgeCanary")
    arn = pipeline.start({"model_name": "m", "script": "x"})
    described = pipeline.wait(arn)
    assert described["status"] == "FAILED" and described["error"] == "CanaryFailed"
    assert pipeline.entered(arn)[-6:] == ["ShiftTraffic", "WaitForCanary", "JudgeCanary",
                                          "JudgeCanaryCaught", "RecordFailure",
                                          "DeploymentFailed"]
    document = document_from_cause(described["cause"])
    assert document is not None and document.step == "JudgeCanary"
    assert document.details == '{"verdict": {}}' and "all-at-once" in document.help
    assert pipeline.called("RecordFailure")[0]["failed_step"]["name"] == "JudgeCanary"
    check_redrivable(record_of(described, pipeline.history(arn)))
    pipeline.client.redrive_execution(executionArn=arn)
    again = pipeline.wait(arn)
    assert again["status"] == "SUCCEEDED", again
    entered = pipeline.entered(arn)
    resumed = entered[entered.index("ExecutionRedriven"):]
    assert resumed[:4] == ["ExecutionRedriven", "DeploymentFailed", "ResumeFailedStep",
                           "DeployModel"]
    assert resumed[-4:] == ["JudgeCanary", "CanaryVerdict", "PromoteModel",
                            "DeploymentSucceeded"]
    assert len(pipeline.called("TrainModel")) == 1  # the canary starts over, not training


def test_a_canary_action_neither_next_nor_promote_is_recorded_never_promoted(
        pipeline: Pipeline) -> None:
    pipeline.canary_verdicts = ["next", "hold"]
    arn = pipeline.start({"model_name": "m", "script": "x"})
    described = pipeline.wait(arn)
    assert described["status"] == "FAILED", described
    assert pipeline.entered(arn)[-5:] == ["CanaryVerdict", "CanaryVerdictUnknown",
                                          "JudgeCanaryCaught", "RecordFailure",
                                          "DeploymentFailed"]
    assert not pipeline.called("PromoteModel")
    assert described["error"] == "InternalError"  # trainship's fault: "please report it"
    document = document_from_cause(described["cause"])
    assert document is not None and document.step == "JudgeCanary"
    assert "neither next nor promote" in document.message and "report" in document.help
    # RecordFailure had the canary to discard (the pipeline's real step)
    assert pipeline.called("RecordFailure")[0]["canary"]["action"] == "hold"
