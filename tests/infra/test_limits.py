"""Issue 10 item 14: every time limit nests inside the next one, so the inner limit
fires first, its failure is caught, and RecordFailure always runs.

Computed from the synthesized template and the state machine definition in it, with
AWS's semantics:
- a Task without TimeoutSeconds waits 99999999 s (Amazon States Language, Task state);
- a CodeBuild build is bounded by its queued timeout plus its build timeout, and ends
  TIMED_OUT at the latter, which startBuild.sync reports as a failed task;
- each Retry attempt may take the state's whole TimeoutSeconds (conservative), with
  waits of IntervalSeconds * BackoffRate^n between attempts;
- the rollout loop ends at the first CheckRollout past the rollout deadline;
- the canary loop (its Wait reads ``$.canary.interval_seconds``) runs at most one round per
  step, at most 100 steps (they increase from 1 to 100 percent), and its waits add up to
  at most trainship.canary.MAX_CANARY_SECONDS (Policy refuses more).
"""

from __future__ import annotations

from typing import Any

from tests.infra.helpers import Synth, definition_with_substitutions
from trainship.canary import MAX_CANARY_SECONDS
from trainship.request import MAX_TIMEOUT_SECONDS

CANARY_WAIT_PATH = "$.canary.interval_seconds"
MAX_CANARY_STEPS = 100


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _project(template: dict[str, Any], prefix: str) -> dict[str, Any]:
    found = [v["Properties"] for k, v in _resources(template, "AWS::CodeBuild::Project").items()
             if k.startswith(prefix)]
    assert len(found) == 1
    return found[0]


def _function(template: dict[str, Any], step: str) -> dict[str, Any]:
    found = [v["Properties"] for k, v in _resources(template, "AWS::Lambda::Function").items()
             if k.startswith(f"{step}Function")]
    assert len(found) == 1, step
    return found[0]


def attempt_worst(state: dict[str, Any]) -> float:
    """One state's worst time: every attempt at full length, plus the retry waits."""
    timeout = state.get("TimeoutSeconds", 99_999_999)
    total = float(timeout)
    for retry in state.get("Retry", []):
        interval = retry.get("IntervalSeconds", 1)
        rate = retry.get("BackoffRate", 2.0)
        cap = retry.get("MaxDelaySeconds", float("inf"))
        for n in range(retry.get("MaxAttempts", 3)):
            total += timeout + min(interval * rate ** n, cap)
    return total


def _edges(states: dict[str, Any], name: str) -> list[str]:
    """The transitions out of a state but into the failure path: a Catch is not one, and
    neither is a Choice's way into it (a Pass that sets ``$.failure``, as
    CanaryVerdictUnknown does); the failure path is counted once, as RecordFailure."""
    state = states[name]
    out = [state["Next"]] if "Next" in state else []
    out += [c["Next"] for c in state.get("Choices", [])]
    out += [state["Default"]] if "Default" in state else []
    return [n for n in out if states[n].get("ResultPath") != "$.failure"]


def _reach(states: dict[str, Any], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(_edges(states, start))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _edges(states, name)
    return seen


def worst_path_seconds(definition: dict[str, Any], rollout_deadline: float,
                       poll_seconds: float) -> float:
    """The longest a failing execution can take up to the end of RecordFailure."""
    states = definition["States"]
    in_loop = {name for name in states if name in _reach(states, name)}
    canary_waits = [name for name in in_loop
                    if states[name].get("SecondsPath") == CANARY_WAIT_PATH]
    canary = {name for wait in canary_waits for name in in_loop
              if name in _reach(states, wait) and wait in _reach(states, name)}
    in_loop -= canary
    main = [name for name in states if name not in in_loop | canary
            and name != "RecordFailure"]
    total = sum(attempt_worst(states[n]) for n in main if states[n]["Type"] == "Task")
    total += sum(states[n].get("Seconds", 0) for n in main if states[n]["Type"] == "Wait")
    if canary:
        total += MAX_CANARY_SECONDS + MAX_CANARY_STEPS * sum(
            attempt_worst(states[n]) for n in canary if states[n]["Type"] == "Task")
    if in_loop:
        # ends at the first check past the deadline: at most one check that started just
        # before it, one wait and one more check
        loop_tasks = sum(attempt_worst(states[n]) for n in in_loop
                         if states[n]["Type"] == "Task")
        total += rollout_deadline + 2 * (poll_seconds + loop_tasks)
    # any Catch leads to RecordFailure, which runs after the longest prefix at worst
    return total + attempt_worst(states["RecordFailure"])


def test_every_task_state_has_a_timeout(synthesized: Synth) -> None:
    _, template, _ = synthesized
    definition, _ = definition_with_substitutions(template)
    for name, state in definition["States"].items():
        if state["Type"] == "Task":
            assert "TimeoutSeconds" in state, f"{name} would wait 99999999 s"
    assert "TimeoutSeconds" in definition, "the execution needs its own timeout"


def test_script_build_state_nest_for_both_builds(synthesized: Synth) -> None:
    _, template, _ = synthesized
    states = definition_with_substitutions(template)[0]["States"]
    train, image = _project(template, "Train"), _project(template, "Image")
    # the script's own limit is inside the build's, with room for pip and provisioning
    assert MAX_TIMEOUT_SECONDS + 15 * 60 <= train["TimeoutInMinutes"] * 60
    for project, state in ((train, states["TrainModel"]), (image, states["BuildImage"])):
        build_bound = (project["QueuedTimeoutInMinutes"] + project["TimeoutInMinutes"]) * 60
        assert build_bound < state["TimeoutSeconds"], (state["Comment"], build_bound)


def test_lambda_states_outlast_their_functions(synthesized: Synth) -> None:
    _, template, _ = synthesized
    states = definition_with_substitutions(template)[0]["States"]
    for name, state in states.items():
        if state.get("Resource") == "arn:aws:states:::lambda:invoke":
            function = _function(template, name)
            # the function's own timeout fires first (its init phase adds up to 10 s)
            assert function["Timeout"] + 10 < state["TimeoutSeconds"], name


def test_worst_path_with_record_failure_fits_the_execution_timeout(synthesized: Synth) -> None:
    _, template, _ = synthesized
    definition, _ = definition_with_substitutions(template)
    env = _function(template, "CheckRollout")["Environment"]["Variables"]
    deadline = float(env["TRAINSHIP_ROLLOUT_TIMEOUT_SECONDS"])
    poll = float(env["TRAINSHIP_ROLLOUT_POLL_SECONDS"])
    worst = worst_path_seconds(definition, deadline, poll)
    # `definition` is the template's own DefinitionString: the limit reaches AWS
    assert worst < definition["TimeoutSeconds"], (worst, definition["TimeoutSeconds"])


def test_the_canary_loop_counts_apart_from_the_rollout_loop(synthesized: Synth) -> None:
    """Both loops are found, each with its own states; the canary's worst is what the
    execution timeout grew by."""
    _, template, _ = synthesized
    definition, _ = definition_with_substitutions(template)
    states = definition["States"]
    assert states["WaitForCanary"]["SecondsPath"] == CANARY_WAIT_PATH
    loop = _reach(states, "WaitForCanary")
    assert {"ShiftTraffic", "JudgeCanary", "CanaryVerdict"} <= loop
    assert "WaitForRollout" not in loop
    without = {**definition, "States": {
        **states, "SmokeTestModel": {**states["SmokeTestModel"], "Next": "PromoteModel"}}}
    for name in ("ChooseRollout", "ShiftTraffic", "WaitForCanary", "JudgeCanary",
                 "CanaryVerdict"):
        del without["States"][name]
    env = _function(template, "CheckRollout")["Environment"]["Variables"]
    args = (float(env["TRAINSHIP_ROLLOUT_TIMEOUT_SECONDS"]),
            float(env["TRAINSHIP_ROLLOUT_POLL_SECONDS"]))
    grown = worst_path_seconds(definition, *args) - worst_path_seconds(without, *args)
    per_step = attempt_worst(states["ShiftTraffic"]) + attempt_worst(states["JudgeCanary"])
    assert grown == MAX_CANARY_SECONDS + MAX_CANARY_STEPS * per_step


def test_the_old_limits_would_not_nest() -> None:
    """The previous values: a 2 h train build equal to the script's 2 h maximum, and Task
    states without timeouts under a 4 h execution limit."""
    assert not MAX_TIMEOUT_SECONDS + 15 * 60 <= 120 * 60
    old = {"StartAt": "A", "TimeoutSeconds": 4 * 3600, "States": {
        "A": {"Type": "Task", "Next": "RecordFailure"},
        "RecordFailure": {"Type": "Task", "TimeoutSeconds": 150, "End": True}}}
    assert worst_path_seconds(old, 600, 10) > old["TimeoutSeconds"]
