"""Lambda, locally: the step handlers called in process as Lambda calls them, and the
router that sends the state machine's service Tasks to them and to the local CodeBuild."""

from __future__ import annotations

import importlib
import json
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from trainship.local.codebuild import BuildFailed, LocalCodeBuild
from trainship.local.sfn import TaskFailure, lambda_error_cause
from trainship.local.stack import REGION
from trainship.pipeline import LAMBDA_STEPS


def local_function_arn(step: str) -> str:
    return f"arn:aws:lambda:{REGION}:000000000000:function:trainship-{step}"


class LambdaContext:
    """The parts of Lambda's context object that Powertools reads."""

    def __init__(self, step: str) -> None:
        self.function_name = f"trainship-{step}"
        self.function_version = "$LATEST"
        self.invoked_function_arn = local_function_arn(step)
        self.memory_limit_in_mb = LAMBDA_STEPS[step].memory_mb if step in LAMBDA_STEPS else 1024
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/trainship-{step}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + 900

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def invoke_lambda(step: str, payload: Any) -> Any:
    """Call a handler as Lambda would: JSON in, JSON out, exceptions as errorType."""
    module = importlib.import_module(LAMBDA_STEPS[step].module)
    result = module.handler(json.loads(json.dumps(payload)), LambdaContext(step))
    return json.loads(json.dumps(result))


class TaskRouter:
    """Routes the state machine's service Tasks to local Lambdas and CodeBuild.

    Fault injection (for reliability tests): ``<home>/faults.json`` maps a state name to
    ``{"error": NAME, "cause": TEXT, "times": N}``; the next N calls of that state fail
    with that error before reaching the Lambda or the build, as the AWS service would.
    """

    def __init__(self, codebuild: LocalCodeBuild, faults_file: Path | None = None) -> None:
        self.codebuild = codebuild
        self.faults_file = faults_file
        self.by_arn = {local_function_arn(step): step for step in LAMBDA_STEPS}
        self._lock = threading.Lock()

    def _inject(self, state: str | None) -> None:
        if self.faults_file is None or state is None:
            return
        with self._lock:
            if not self.faults_file.exists():
                return
            faults = json.loads(self.faults_file.read_text() or "{}")
            fault = faults.get(state)
            if not fault or int(fault.get("times", 0)) <= 0:
                return
            fault["times"] = int(fault["times"]) - 1
            self.faults_file.write_text(json.dumps(faults))
        raise TaskFailure(str(fault["error"]), str(fault.get("cause", "injected fault")))

    def __call__(self, resource_arn: str, parameters: dict[str, Any]) -> Any:
        if resource_arn.endswith(":lambda:invoke"):
            step = self.by_arn.get(str(parameters.get("FunctionName")))
            if step is None:
                raise TaskFailure("Lambda.ResourceNotFoundException",
                                  f"Function not found: {parameters.get('FunctionName')}")
            self._inject(step)
            try:
                payload = invoke_lambda(step, parameters.get("Payload"))
            except Exception as exc:
                raise TaskFailure(type(exc).__name__, lambda_error_cause(
                    exc, traceback.format_tb(exc.__traceback__))) from exc
            return {"Payload": payload, "StatusCode": 200, "ExecutedVersion": "$LATEST"}
        if ":codebuild:startBuild" in resource_arn:
            overrides = parameters.get("EnvironmentVariablesOverride") or []
            self._inject(next((o.get("Value") for o in overrides
                               if o.get("Name") == "TRAINSHIP_STEP"), None))
            try:
                build = self.codebuild.start_build(
                    str(parameters["ProjectName"]),
                    parameters.get("EnvironmentVariablesOverride") or [])
            except BuildFailed as exc:
                raise TaskFailure("States.TaskFailed", json.dumps({"Build": exc.build})) from exc
            except KeyError as exc:
                raise TaskFailure("CodeBuild.ResourceNotFoundException", str(exc)) from exc
            return {"Build": build}
        raise TaskFailure("States.Runtime", f"no local integration for {resource_arn}")
