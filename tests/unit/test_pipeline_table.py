"""trainship.pipeline against the ASL file both stacks run, and the ASL's error names
against trainship.errors: the contracts CDK and the local stack share."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from trainship import errors, pipeline
from trainship.pipeline import ASL_PATH, BUILD_STEPS, LAMBDA_STEPS

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
CODEBUILD_START = "arn:aws:states:::codebuild:startBuild.sync"
# The error-name prefixes of each integration's own failures (Step Functions' error
# handling: "States.*" are its own; service integrations report "<Service>.<Exception>").
SERVICE_PREFIX = {LAMBDA_INVOKE: "Lambda.", CODEBUILD_START: "CodeBuild."}


def all_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, those inside Parallel branches and Map processors included."""
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from all_states(branch["States"])
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from all_states(state[key]["States"])


def definition() -> dict[str, Any]:
    return json.loads(ASL_PATH.read_text())


def tasks(resource: str) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in all_states(definition()["States"])
            if state["Type"] == "Task" and state["Resource"] == resource}


# --- the pipeline table --------------------------------------------------------------

def test_every_task_state_is_a_lambda_or_a_build() -> None:
    kinds = {state["Resource"] for _, state in all_states(definition()["States"])
             if state["Type"] == "Task"}
    assert kinds == {LAMBDA_INVOKE, CODEBUILD_START}


def test_lambda_states_are_the_table() -> None:
    states = tasks(LAMBDA_INVOKE)
    assert set(states) == set(LAMBDA_STEPS)
    for name, state in states.items():
        step = LAMBDA_STEPS[name]
        assert step.state == name
        assert state["Parameters"]["FunctionName"] == "${" + step.placeholder + "}", name


def test_build_states_are_the_table() -> None:
    states = tasks(CODEBUILD_START)
    assert set(states) == set(BUILD_STEPS)
    for name, state in states.items():
        step = BUILD_STEPS[name]
        assert step.state == name
        assert state["Parameters"]["ProjectName"] == "${" + step.placeholder + "}", name
        assert (pipeline.REPO / step.buildspec).is_file(), step.buildspec


def test_substitutions_fill_every_placeholder_and_nothing_else() -> None:
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL_PATH.read_text()))
    subs = pipeline.substitutions({s: f"arn:{s}" for s in LAMBDA_STEPS},
                                  {s: f"project-{s}" for s in BUILD_STEPS})
    assert set(subs) == placeholders
    assert subs["ValidateRequestFunctionArn"] == "arn:ValidateRequest"
    assert subs["TrainProjectName"] == "project-TrainModel"


@pytest.mark.parametrize("arns, projects", [
    ({s: "x" for s in list(LAMBDA_STEPS)[1:]}, {s: "p" for s in BUILD_STEPS}),  # one missing
    ({**{s: "x" for s in LAMBDA_STEPS}, "Typo": "x"}, {s: "p" for s in BUILD_STEPS}),
    ({s: "x" for s in LAMBDA_STEPS}, {"TrainModel": "p"}),
])
def test_substitutions_refuse_a_state_set_other_than_the_table(
        arns: dict[str, str], projects: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="the pipeline has"):
        pipeline.substitutions(arns, projects)


def test_each_lambda_state_has_its_handler_and_every_step_handler_is_in_the_table() -> None:
    for step in LAMBDA_STEPS.values():
        module = importlib.import_module(step.module)
        assert callable(module.handler), step.module
        assert step.handler == f"{step.module}.handler"
    # the other way: a lambdas/ module with a handler is a state's, or the API's
    modules = {f"lambdas.{path.stem}" for path in (pipeline.REPO / "lambdas").glob("*.py")
               if not path.stem.startswith("_")
               and re.search(r"^def handler\(", path.read_text(), re.MULTILINE)}
    assert modules - {step.module for step in LAMBDA_STEPS.values()} == {"lambdas.api"}


def test_each_function_times_out_before_its_state() -> None:
    """The function's own timeout fires first (its init phase adds up to 10 s), so its
    error reaches the state's Retry and Catch instead of States.Timeout."""
    states = tasks(LAMBDA_INVOKE)
    for name, step in LAMBDA_STEPS.items():
        assert step.timeout_seconds + 10 < states[name]["TimeoutSeconds"], name
        assert 128 <= step.memory_mb <= 10240, name  # Lambda's memory range


def test_only_states_after_the_image_build_get_the_cluster_role() -> None:
    """Least privilege: the states before an image exists never talk to the cluster;
    DeployModel does, and RecordFailure rolls back there."""
    states = definition()["States"]
    before, name = [], definition()["StartAt"]
    while name != "BuildImage":
        before.append(name)
        # the Route (a Choice): a deployment is its Default
        name = states[name].get("Next") or states[name]["Default"]
    assert before and not [s for s in before if s in LAMBDA_STEPS
                           and LAMBDA_STEPS[s].cluster_access]
    # a rollback's first step reads the registry and the image registry only
    assert not LAMBDA_STEPS["PrepareRollback"].cluster_access
    assert states["PrepareRollback"]["Next"] == "DeployModel"
    assert LAMBDA_STEPS[states["BuildImage"]["Next"]].cluster_access
    assert LAMBDA_STEPS["RecordFailure"].cluster_access


def test_remove_model_and_rotate_token_have_cluster_access_in_a_role_of_their_own() -> None:
    """A delete removes the model's objects (the cluster) and, with purge, its images; both it
    and a token rotation list the state machine's executions: those rights stay off the role
    the deploying states share."""
    for state in ("RemoveModel", "RotateToken"):
        step = LAMBDA_STEPS[state]
        assert step.cluster_access and step.own_role
    assert sorted(s.state for s in LAMBDA_STEPS.values() if s.own_role) == [
        "RemoveModel", "RotateToken"]


def test_the_table_is_a_bottom_layer() -> None:
    source = (pipeline.REPO / "trainship" / "pipeline.py").read_text()
    imports = re.findall(r"^\s*(?:from|import)\s+([\w.]+)", source, re.MULTILINE)
    assert not [name for name in imports if name.split(".")[0] in ("trainship", "lambdas",
                                                                     "infra")], imports


# --- error names ---------------------------------------------------------------------

def error_names() -> Iterator[tuple[str, str, str]]:
    """(state, its resource, error name) for every ErrorEquals entry of every state."""
    for name, state in all_states(definition()["States"]):
        for rule in (*state.get("Retry", []), *state.get("Catch", [])):
            for error in rule["ErrorEquals"]:
                yield name, state.get("Resource", ""), error


def test_the_asl_names_errors() -> None:
    names = {error for _, _, error in error_names()}
    assert "States.ALL" in names and "TransientError" in names


def test_every_custom_error_name_is_an_error_class() -> None:
    """A custom name (not Step Functions' own, not the integration's) is what a Lambda
    reports as errorType: the class name of the trainship exception it raised."""
    for state, resource, error in error_names():
        if error.startswith("States."):
            continue
        prefix = SERVICE_PREFIX.get(resource)
        if "." in error:
            # a service's own error, on a state of that service only
            assert prefix is not None and error.startswith(prefix), (state, error)
            continue
        assert resource == LAMBDA_INVOKE, (state, error)  # only Lambdas raise trainship's
        cls = getattr(errors, error, None)
        assert isinstance(cls, type) and issubclass(cls, errors.TrainshipError), (state, error)
        assert errors.error_class(error) is cls, (state, error)


def _subclasses(cls: type[errors.TrainshipError]) -> Iterator[type[errors.TrainshipError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_error_class_is_known_by_its_name() -> None:
    """The other way: any error class a Lambda raises keeps its name through the state
    machine (RecordFailure maps an unknown errorType to InternalError), and is a name the
    ASL may use."""
    classes = [cls for cls in _subclasses(errors.TrainshipError)
               if cls.__module__ == errors.__name__]
    assert errors.TransientError in classes
    for cls in classes:
        assert errors.error_class(cls.__name__) is cls, cls.__name__
        assert not cls.__name__.startswith("States.") and "." not in cls.__name__


def test_every_lambda_state_retries_transient_errors() -> None:
    """TransientError means "the state machine retries it": every Lambda state does, but
    DeploymentFailed, which raises the recorded error again (a recorded TransientError
    would be retried there) and calls nothing that could be briefly unavailable."""
    for name, state in tasks(LAMBDA_INVOKE).items():
        if name == pipeline.FAILED_STATE:
            assert "TransientError" not in json.dumps(state["Retry"])
            continue
        retried = {e for rule in state["Retry"] for e in rule["ErrorEquals"]}
        assert {"TransientError"} <= retried or "States.ALL" in retried, name


# --- redriving a caught failure ----------------------------------------------------------

def test_resume_targets_are_states_that_run_before_the_failed_one_or_it() -> None:
    """Each caught state resumes at itself or at an earlier state (DeployModel for the
    ones after it, whose rollout RecordFailure removed), never before BuildImage's output
    exists for a later state; every caught state's name has its Caught state."""
    states = definition()["States"]
    # each state's distance along a deployment's path (from ValidateRequest) along Next,
    # Choices and Default (not Catch, nor a Choice's way into the failure path: a Pass that
    # sets $.failure, as CanaryVerdictUnknown does); the Route's other branches resume at
    # their own state
    distance, frontier = {"ValidateRequest": 0}, ["ValidateRequest"]
    while frontier:
        name = frontier.pop(0)
        state = states[name]
        for target in [state.get("Next"), state.get("Default"),
                       *[rule["Next"] for rule in state.get("Choices", [])]]:
            if target and target not in distance and \
                    states[target].get("ResultPath") != "$.failure":
                distance[target] = distance[name] + 1
                frontier.append(target)
    for failed, resume_at in pipeline.RESUME_AT.items():
        assert failed in states and resume_at in states, failed
        assert f"{failed}{pipeline.CAUGHT_SUFFIX}" in states, failed
        if failed not in distance:  # PrepareRollback, RemoveModel: before any deployment step
            assert resume_at == failed
            continue
        assert distance[resume_at] <= distance[failed], failed
        if distance[failed] > distance["DeployModel"]:
            assert resume_at == "DeployModel", failed
    assert "ValidateRequest" not in pipeline.RESUME_AT
    assert pipeline.FAILED_STATE in LAMBDA_STEPS
    assert not LAMBDA_STEPS[pipeline.FAILED_STATE].cluster_access
