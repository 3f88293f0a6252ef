"""Issue 10 item 9: the builds get the job as a staged document (TRAINSHIP_JOB_URI), not
as an environment value that grows with the request.

CodeBuild's StartBuild refuses an environment variable over 4096 characters
(InvalidInputException); the largest valid request (50 requirements of 200 characters)
made the old ``States.JsonToString($)`` override about 11 KB. The local CodeBuild now
refuses it the same way, so the whole ASL is run here through moto with the local runner.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from trainship import image, registry, staging, steps, training
from trainship.config import Settings
from trainship.local import sfn
from trainship.local.codebuild import (
    MAX_ENVIRONMENT_VARIABLE_LENGTH,
    LocalCodeBuild,
    Project,
)
from trainship.local.daemon import (
    IMAGE_PROJECT,
    TRAIN_PROJECT,
    render_definition,
    substitutions,
)
from trainship.pipeline import ASL_PATH
from trainship.request import MAX_REQUIREMENT_CHARS, MAX_REQUIREMENTS
from trainship.state import BuildResult, DeploymentState, ExportedVariable, ModelInfo

REPO = Path(__file__).resolve().parents[2]


def largest_requirements() -> list[str]:
    """As many requirements as a request may give, each as long as it may be."""
    out = []
    for i in range(MAX_REQUIREMENTS):
        name = f"p{i:02d}"
        out.append(name + "a" * (MAX_REQUIREMENT_CHARS - len(name) - len("==1.0")) + "==1.0")
    assert all(len(r) == MAX_REQUIREMENT_CHARS for r in out)
    return out


def settings(tmp_path: Path) -> Settings:
    return Settings(staging_uri=str(tmp_path / "staging"), tracking_uri="", cluster="process",
                    model_alias="live", rollout_timeout_seconds=60, rollout_poll_seconds=1,
                    state_machine_arn="", archive_dir="", home=tmp_path, targets=("process",))


def fake_register(**kwargs: Any) -> ModelInfo:
    return ModelInfo(name=kwargs["model_name"], version="3", run_id=kwargs["run_id"],
                     model_uri="models:/m-1", source="s")


def validated(tmp_path: Path, deployment_id: str = "d-1") -> DeploymentState:
    body = {"model_name": "churn", "script": "print('train')\n",
            "requirements": largest_requirements()}
    return steps.validate_request(body, deployment_id=deployment_id, started_at="",
                                  settings=settings(tmp_path))


def test_validate_request_stages_the_normalised_request_as_the_job(tmp_path: Path) -> None:
    state = validated(tmp_path)
    assert state.job_uri == str(tmp_path / "staging" / "d-1" / "job.json")
    staged = json.loads(Path(state.job_uri).read_text())
    assert staged["requirements"] == largest_requirements()
    assert staged["script_uri"] == str(tmp_path / "staging" / "d-1" / "train.py")
    assert DeploymentState.model_validate(staged) == state


def test_register_model_restages_the_job_with_the_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "register", fake_register)
    state = validated(tmp_path)
    state.training = BuildResult(build_id="b", exported_variables=[
        ExportedVariable(Name="MLFLOW_RUN_ID", Value="run-1")])
    out = steps.register_model(state, settings=settings(tmp_path))
    staged = DeploymentState.model_validate_json(Path(out.job_uri).read_text())
    assert staged.model is not None and staged.model.version == "3"
    assert staged.model.run_id == "run-1"


def test_the_builds_read_the_job_from_its_uri(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    state = validated(tmp_path)
    monkeypatch.delenv("TRAINSHIP_JOB", raising=False)
    monkeypatch.setenv("TRAINSHIP_JOB_URI", state.job_uri)
    job = training.load_job()
    assert job.requirements == largest_requirements() and job.deployment_id == "d-1"

    seen: list[DeploymentState] = []
    monkeypatch.setattr(image, "build", lambda s, **kw: seen.append(s) or "img@sha256:0")
    assert image.main(["build"]) == 0
    assert seen[0].requirements == largest_requirements()


def test_a_build_without_its_job_says_so(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINSHIP_JOB_URI", raising=False)
    with pytest.raises(staging.JobMissing, match="TRAINSHIP_JOB_URI"):
        training.load_job()
    monkeypatch.setenv("TRAINSHIP_JOB_URI", str(tmp_path / "nope" / "job.json"))
    with pytest.raises(staging.JobMissing, match="missing"):
        training.load_job()


def test_the_asl_passes_the_job_uri_not_the_state() -> None:
    definition = json.loads(ASL_PATH.read_text())
    for name in ("TrainModel", "BuildImage"):
        overrides = definition["States"][name]["Parameters"]["EnvironmentVariablesOverride"]
        by_name = {o["Name"]: o for o in overrides}
        assert by_name["TRAINSHIP_JOB_URI"]["Value.$"] == "$.job_uri", name
        assert "TRAINSHIP_JOB" not in by_name, name
        assert "JsonToString" not in json.dumps(overrides), name


# --- the whole ASL through moto, with the local CodeBuild ----------------------------

BUILDSPEC = """
version: 0.2
env:
  exported-variables: [MLFLOW_RUN_ID, JOB_MODEL_VERSION, JOB_REQUIREMENTS]
phases:
  build:
    commands:
      - export MLFLOW_RUN_ID=run-1
      - export JOB_MODEL_VERSION="$(python3 "$READ_JOB" model)"
      - export JOB_REQUIREMENTS="$(python3 "$READ_JOB" requirements)"
"""
# What a build step does with the job: read it through trainship.staging.read_job.
READ_JOB = """
import json, sys
from trainship import staging
job = json.loads(staging.read_job())
if sys.argv[1] == "model":
    print((job.get("model") or {}).get("version", ""))
else:
    print(len(job["requirements"]))
"""


@pytest.fixture
def stepfunctions() -> Iterator[Any]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.client("stepfunctions", region_name="us-east-1")
    sfn.uninstall()


def run_asl(client: Any, definition: str, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the state machine: ValidateRequest and RegisterModel are the real steps (staging
    in tmp_path), both builds run on the local CodeBuild, DeployModel ends the run."""
    monkeypatch.setattr(registry, "register", fake_register)
    spec = tmp_path / "spec.yml"
    spec.write_text(BUILDSPEC)
    (tmp_path / "read_job.py").write_text(READ_JOB)
    env = {"READ_JOB": str(tmp_path / "read_job.py")}
    codebuild = LocalCodeBuild(
        projects={name: Project(name, spec, REPO, env) for name in (TRAIN_PROJECT, IMAGE_PROJECT)},
        logs_dir=tmp_path / "logs", work_root=tmp_path / "work",
        base_env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
                  "PYTHONPATH": str(REPO)})
    builds: list[dict[str, Any]] = []
    by_arn = {arn: step for step, arn in substitutions().items()}

    def route(arn: str, params: dict[str, Any]) -> Any:
        if ":codebuild:startBuild" in arn:
            build = codebuild.start_build(params["ProjectName"],
                                          params.get("EnvironmentVariablesOverride"))
            builds.append(build)
            return {"Build": build}
        step = by_arn[params["FunctionName"]].removesuffix("FunctionArn")
        payload = params["Payload"]
        if step == "ValidateRequest":
            out = steps.validate_request(payload["request"],
                                         deployment_id=payload["deployment_id"],
                                         started_at=str(payload["started_at"]),
                                         settings=settings(tmp_path)).out()
        elif step == "RegisterModel":
            out = steps.register_model(DeploymentState.model_validate(payload),
                                       settings=settings(tmp_path)).out()
        elif step == "DeployModel":
            raise sfn.TaskFailure("RolloutFailed", "stop here: the builds are what is tested")
        elif step == "RecordFailure":
            out = {"error": payload["failure"]["Error"], "cause": payload["failure"]["Cause"]}
        elif step == "DeploymentFailed":  # fails the execution with what was recorded
            recorded = payload["state"]["recorded"]
            raise sfn.TaskFailure(recorded["error"], recorded["cause"])
        else:
            raise AssertionError(step)
        return {"Payload": out}

    sfn.install(route)
    arn = client.create_state_machine(
        name=f"t{time.monotonic_ns()}", definition=definition,
        roleArn="arn:aws:iam::123456789012:role/test")["stateMachineArn"]
    body = {"model_name": "churn", "script": "print('train')\n",
            "requirements": largest_requirements()}
    execution = client.start_execution(stateMachineArn=arn, name="d-big", input=json.dumps(body))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        described = client.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING":
            return described, builds
        time.sleep(0.1)
    raise AssertionError("execution did not finish")


def test_largest_request_gets_through_both_builds(stepfunctions: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    described, builds = run_asl(stepfunctions, render_definition(substitutions()), tmp_path,
                                monkeypatch)
    assert described["error"] == "RolloutFailed", described  # past TrainModel and BuildImage
    assert [b["ProjectName"] for b in builds] == [TRAIN_PROJECT, IMAGE_PROJECT]
    exported = [{v["Name"]: v["Value"] for v in b["ExportedEnvironmentVariables"]}
                for b in builds]
    assert exported[0]["JOB_REQUIREMENTS"] == str(MAX_REQUIREMENTS)
    assert exported[0]["JOB_MODEL_VERSION"] == ""  # TrainModel: the request, no model yet
    assert exported[1]["JOB_MODEL_VERSION"] == "3"  # BuildImage: RegisterModel's state
    for build in builds:
        for item in build["Environment"]["EnvironmentVariables"]:
            assert len(item["Value"]) <= MAX_ENVIRONMENT_VARIABLE_LENGTH


def test_the_state_as_an_override_fails_like_codebuild(stepfunctions: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The previous definition (the whole state as TRAINSHIP_JOB) fails on the local stack
    as StartBuild fails on AWS: CodeBuild.InvalidInputException, and no build ran."""
    old = render_definition(substitutions()).replace(
        '{"Name": "TRAINSHIP_JOB_URI", "Type": "PLAINTEXT", "Value.$": "$.job_uri"}',
        '{"Name": "TRAINSHIP_JOB", "Type": "PLAINTEXT", "Value.$": "States.JsonToString($)"}')
    assert "States.JsonToString($)" in old
    described, builds = run_asl(stepfunctions, old, tmp_path, monkeypatch)
    assert described["error"] == "CodeBuild.InvalidInputException"
    assert "should be at most 4096 characters" in described["cause"]
    assert builds == []
