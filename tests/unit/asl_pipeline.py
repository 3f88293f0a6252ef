"""The rendered ASL file on moto's interpreter (as the local stack runs it) with every Task
routed to a stand-in (``Pipeline``) except RecordFailure and DeploymentFailed, the real
handlers: the ``pipeline`` fixture (tests/unit/conftest.py) of test_statemachine_runs.py and
test_console_history.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from trainship.errors import InvalidRequest, RolloutFailed, TrainshipError
from trainship.local import sfn
from trainship.local.daemon import PROJECTS, render_definition, substitutions
from trainship.local.lambda_runtime import invoke_lambda, local_function_arn
from trainship.local.sfn import lambda_error_cause
from trainship.pipeline import LAMBDA_STEPS


class Pipeline:
    """The rendered ASL file on moto, every Task routed here: the Lambda states answer with
    canned states (or fail as told), RecordFailure and DeploymentFailed are the real
    handlers, the builds return canned builds (or fail as told)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.failing: dict[str, int] = {}  # state -> how many more calls fail
        self.errors: dict[str, TrainshipError] = {}  # state -> the error it fails with
        self.calls: list[tuple[str, Any]] = []
        self.by_arn = {local_function_arn(step): step for step in LAMBDA_STEPS}
        self.by_project = {project: state for state, project in PROJECTS.items()}
        # a canary: DeployModel sets $.canary, JudgeCanary answers these actions in turn
        self.canary_verdicts: list[str] | None = None

    def __call__(self, resource: str, params: dict[str, Any]) -> Any:
        if resource.endswith(":lambda:invoke"):
            step = self.by_arn[params["FunctionName"]]
            self.calls.append((step, params["Payload"]))
            if step in ("RecordFailure", "DeploymentFailed"):
                try:
                    return {"Payload": invoke_lambda(step, params["Payload"])}
                except Exception as exc:
                    raise sfn.TaskFailure(type(exc).__name__, lambda_error_cause(exc, [])) \
                        from exc
            self._fail(step)
            state = dict(params["Payload"])
            if step == "ValidateRequest":
                state = {"deployment_id": "d-1", "job_uri": "file:///job.json",
                         "model_name": state["request"]["model_name"]}
            elif step == "PrepareRollback":  # the state of the version served again
                state = {**state["request"], "rollback": {"replaced_version": "2"}}
            elif step == "DeployModel":
                state["rollout"] = {"ready": False, "poll_seconds": 0, "attempt": len(
                    [c for c in self.calls if c[0] == "DeployModel"])}
                if self.canary_verdicts is not None:  # a fresh canary, as steps.deploy_model
                    state["canary"] = {"interval_seconds": 1, "step": 0, "action": ""}
            elif step == "ShiftTraffic":
                state["canary"] = {**state["canary"], "action": ""}
            elif step == "JudgeCanary":
                assert self.canary_verdicts, "JudgeCanary called once too often"
                action = self.canary_verdicts.pop(0)
                state["canary"] = {**state["canary"], "action": action,
                                   "step": state["canary"]["step"] + (action == "next")}
            elif step == "CheckRollout":
                state["rollout"] = {**state["rollout"], "ready": True}
            elif step == "RotateToken":  # trainship.state.TokenRotation
                return {"Payload": {"status": "SUCCEEDED", "action": "rotate-token",
                                    "deployment_id": state["deployment_id"],
                                    "model_name": state["request"]["model_name"],
                                    "inference_token": "tsk_new"}}
            elif step == "PromoteModel":
                return {"Payload": {"result": {"status": "SUCCEEDED", "deployed": state,
                                               "version": state.get("version")}}}
            return {"Payload": {**state, step: True}}
        step = self.by_project[params["ProjectName"]]
        self.calls.append((step, params))
        self._fail(step)
        return {"Build": {"Id": f"{step}:1", "ExportedEnvironmentVariables": [
            {"Name": "STEP", "Value": step}]}}

    def _fail(self, step: str) -> None:
        if self.failing.get(step, 0) <= 0:
            return
        self.failing[step] -= 1
        if step in ("TrainModel", "BuildImage"):  # a build that ended FAILED
            raise sfn.TaskFailure("States.TaskFailed", json.dumps({"Build": {
                "Id": f"{step}:1", "BuildStatus": "FAILED", "Environment": {
                    "EnvironmentVariables": [{"Name": "TRAINSHIP_STEP", "Value": step}]}}}))
        if step in self.errors:
            exc: Exception = self.errors[step]
        elif step == "ValidateRequest":
            exc = InvalidRequest("model_name is missing", step=step)
        else:
            exc = RolloutFailed("not ready", step=step)
        raise sfn.TaskFailure(type(exc).__name__, lambda_error_cause(exc, []))

    def start(self, body: dict[str, Any]) -> str:
        machine = self.client.create_state_machine(
            name=f"m{time.monotonic_ns()}", definition=render_definition(substitutions()),
            roleArn="arn:aws:iam::123456789012:role/test")["stateMachineArn"]
        arn: str = self.client.start_execution(stateMachineArn=machine, name="d-1",
                                               input=json.dumps(body))["executionArn"]
        return arn

    def wait(self, arn: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            described: dict[str, Any] = self.client.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.05)
        raise AssertionError("the execution did not finish")

    def history(self, arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.client.get_execution_history(
            executionArn=arn, maxResults=1000)["events"]
        return events

    def entered(self, arn: str) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] if "stateEnteredEventDetails" in e
                else e["type"] for e in self.history(arn)
                if "stateEnteredEventDetails" in e or e["type"] == "ExecutionRedriven"]

    def called(self, step: str) -> list[Any]:
        return [payload for name, payload in self.calls if name == step]


def running_pipeline(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """The ``pipeline`` fixture's body: a Pipeline routed by the local stack's adapter."""
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "trainship")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        machine = Pipeline(boto3.client("stepfunctions", region_name="us-east-1"))
        sfn.install(machine)
        yield machine
    sfn.uninstall()
