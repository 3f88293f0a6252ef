"""The cost receipt (trainship.cost) of a recorded execution history, checked by hand.

tests/unit/data/history_iris_local.json is GetExecutionHistory of one iris deployment on
the local stack (`trainship deploy docs/examples/iris_sklearn.py`), with the Lambda
payloads elided and each build result cut to the fields the receipt reads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infra.config import COMPUTE_TYPES, Config
from trainship import pricing
from trainship.cost import (
    DEFAULT_BUILD_ENVIRONMENTS,
    LAMBDA_ARCHITECTURE,
    CostReceipt,
    instant,
    receipt,
)
from trainship.pipeline import REPO

HISTORY = Path(__file__).parent / "data" / "history_iris_local.json"
ARM_GB_S = 0.0000133334  # us-east-1, arm64, first tier
REQUEST = 0.0000002  # $0.20 per million


def recorded() -> list[dict[str, Any]]:
    return list(json.loads(HISTORY.read_text()))


@pytest.fixture(scope="module")
def iris() -> CostReceipt:
    return receipt(recorded())


def test_each_state_entered_is_a_transition(iris: CostReceipt) -> None:
    # ValidateRequest, TrainModel, RegisterModel, BuildImage, DeployModel, 4 x
    # (WaitForRollout, CheckRollout, IsRolloutDone), SmokeTestModel, PromoteModel,
    # DeploymentSucceeded
    assert iris.state_transitions == 5 + 4 * 3 + 3 == 20
    assert iris.state_transitions_usd == pytest.approx(20 * 0.025 / 1000)


def test_lambda_duration_is_task_started_to_succeeded_times_memory(iris: CostReceipt) -> None:
    by_name = {fn.function: fn for fn in iris.lambda_functions}
    assert list(by_name) == ["ValidateRequest", "RegisterModel", "DeployModel",
                             "CheckRollout", "SmokeTestModel", "PromoteModel"]
    validate = by_name["ValidateRequest"]  # 15:39:55.352 -> 15:39:55.381, 512 MB
    assert (validate.invocations, validate.billed_ms, validate.memory_mb) == (1, 29, 512)
    assert validate.gb_seconds == pytest.approx(0.5 * 0.029)
    assert validate.usd == pytest.approx(0.0145 * ARM_GB_S + REQUEST)
    register = by_name["RegisterModel"]  # 15:40:09.821 -> 15:40:12.776, 1024 MB
    assert (register.billed_ms, register.gb_seconds) == (2955, pytest.approx(2.955))
    assert register.usd == pytest.approx(2.955 * ARM_GB_S + REQUEST)
    check = by_name["CheckRollout"]  # four polls: 12 + 8 + 8 + 5 ms
    assert (check.invocations, check.billed_ms) == (4, 33)
    assert check.usd == pytest.approx(0.5 * 0.033 * ARM_GB_S + 4 * REQUEST)
    assert {fn.architecture for fn in iris.lambda_functions} == {"arm64"}


def test_builds_are_whole_minutes_on_the_stacks_default_compute(iris: CostReceipt) -> None:
    train, image = iris.builds
    # 15:39:55.388178 -> 15:40:09.818344 and 15:40:12.784908 -> 15:40:15.524087
    assert (train.step, train.seconds, train.billed_minutes) == ("TrainModel", 14.4, 1)
    assert (image.step, image.seconds, image.billed_minutes) == ("BuildImage", 2.7, 1)
    for build in (train, image):
        assert (build.environment_type, build.compute_type) == ("LINUX_CONTAINER",
                                                                 "BUILD_GENERAL1_MEDIUM")
        assert build.usd == pytest.approx(0.01)
        assert build.build_id and build.build_id.startswith(("trainship-train:",
                                                              "trainship-image:"))
    [medium] = iris.build_minutes
    assert (medium.compute_type, medium.billed_minutes, medium.usd) == (
        "BUILD_GENERAL1_MEDIUM", 2, pytest.approx(0.02))


def test_the_total_is_the_sum_of_its_parts(iris: CostReceipt) -> None:
    lambdas = sum(fn.usd for fn in iris.lambda_functions)
    expected = 0.0005 + 0.02 + (0.0145 + 2.955 + 0.0135 + 0.0165 + 0.132 + 0.1175) * ARM_GB_S \
        + 9 * REQUEST
    assert iris.total_usd == pytest.approx(expected, abs=1e-9)
    assert iris.total_usd == pytest.approx(iris.state_transitions_usd + lambdas + 0.02,
                                           abs=1e-9)
    assert iris.final and not iris.unpriced
    assert (iris.region, iris.currency, iris.prices_as_of) == ("us-east-1", "USD",
                                                               pricing.PRICES_AS_OF)


# --- synthetic histories: retries, refusals, a running build, a build on other compute -------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(kind: str, ms: int, **details: Any) -> dict[str, Any]:
    key = kind[0].lower() + kind[1:] + "EventDetails"
    if kind.endswith("StateEntered"):
        key = "stateEnteredEventDetails"
    return {"type": kind, "timestamp": T0 + timedelta(milliseconds=ms), key: details}


def lambda_attempt(start: int, end: int, outcome: str = "TaskSucceeded",
                   **details: Any) -> list[dict[str, Any]]:
    return [event("TaskScheduled", start, resourceType="lambda", resource="invoke"),
            event("TaskStarted", start, resourceType="lambda", resource="invoke"),
            event(outcome, end, resourceType="lambda", resource="invoke", **details)]


def test_a_retry_is_another_transition_and_another_invocation() -> None:
    events = [event("TaskStateEntered", 0, name="RegisterModel"),
              *lambda_attempt(0, 1500, "TaskFailed", error="TransientError", cause="{}"),
              *lambda_attempt(3000, 3500),
              event("TaskStateExited", 3501, name="RegisterModel")]
    cost = receipt(events)
    assert cost.state_transitions == 2  # entered once, retried once
    [register] = cost.lambda_functions
    assert (register.invocations, register.billed_ms) == (2, 2000)
    assert register.gb_seconds == pytest.approx(1.0 * 2.0)  # 1024 MB


def test_a_throttled_attempt_never_ran_the_function() -> None:
    events = [event("TaskStateEntered", 0, name="DeployModel"),
              *lambda_attempt(0, 40, "TaskFailed", error="Lambda.TooManyRequestsException"),
              *lambda_attempt(1000, 1100)]
    cost = receipt(events)
    assert cost.state_transitions == 2
    [deploy] = cost.lambda_functions
    assert (deploy.invocations, deploy.billed_ms) == (1, 100)


def test_an_invocation_is_billed_at_least_one_millisecond() -> None:
    events = [event("TaskStateEntered", 0, name="CheckRollout"), *lambda_attempt(5, 5)]
    [check] = receipt(events).lambda_functions
    assert check.billed_ms == 1 and check.gb_seconds == pytest.approx(0.5 * 0.001)


def build_attempt(start: int, end: int, build: dict[str, Any] | None,
                  outcome: str = "TaskSucceeded", **details: Any) -> list[dict[str, Any]]:
    result = {"output" if outcome == "TaskSucceeded" else "cause":
              json.dumps({"Build": build})} if build is not None else {}
    return [event("TaskScheduled", start, resourceType="codebuild"),
            event("TaskStarted", start, resourceType="codebuild"),
            event(outcome, end, resourceType="codebuild", **result, **details)]


def test_a_running_build_counts_so_far_on_the_default_compute() -> None:
    events = [event("TaskStateEntered", 0, name="TrainModel"),
              event("TaskScheduled", 10, resourceType="codebuild"),
              event("TaskStarted", 10, resourceType="codebuild")]
    cost = receipt(events, final=False, now=T0 + timedelta(seconds=90))
    [build] = cost.builds
    assert (build.step, build.billed_minutes, build.compute_type) == (
        "TrainModel", 2, "BUILD_GENERAL1_MEDIUM")
    assert not cost.final and cost.total_usd == pytest.approx(0.000025 + 0.02)
    assert receipt(events).builds == []  # a finished receipt counts no open attempt


def test_a_build_on_compute_without_a_price_is_reported_not_guessed() -> None:
    arm = {"Id": "img:1", "StartTime": T0.timestamp() * 1000,  # epoch milliseconds
           "EndTime": (T0 + timedelta(seconds=61)).timestamp() * 1000,
           "Environment": {"Type": "ARM_CONTAINER", "ComputeType": "BUILD_GENERAL1_LARGE"}}
    events = [event("TaskStateEntered", 0, name="BuildImage"),
              *build_attempt(0, 62_000, arm)]
    cost = receipt(events)
    [build] = cost.builds
    assert (build.seconds, build.billed_minutes, build.usd) == (61.0, 2, None)
    assert cost.unpriced == ["BuildImage build img:1: 2 min on ARM_CONTAINER "
                             "BUILD_GENERAL1_LARGE (no price in trainship.pricing)"]
    assert cost.build_minutes[0].usd is None
    assert cost.total_usd == pytest.approx(cost.state_transitions_usd)


def test_a_failed_build_counts_and_a_refused_start_does_not() -> None:
    failed = {"Id": "train:1", "StartTime": "2026-01-01T00:00:00Z",
              "EndTime": "2026-01-01T00:03:00.5Z", "BuildStatus": "FAILED"}
    events = [event("TaskStateEntered", 0, name="TrainModel"),
              *build_attempt(0, 200, None, "TaskFailed",
                             error="CodeBuild.InvalidInputException", cause="too long"),
              *build_attempt(1000, 181_000, failed, "TaskFailed", error="States.TaskFailed")]
    cost = receipt(events)
    [build] = cost.builds
    assert (build.build_id, build.seconds, build.billed_minutes) == ("train:1", 180.5, 4)
    assert cost.state_transitions == 2


def test_timestamps_in_each_form_the_history_holds() -> None:
    assert instant("2026-01-01T00:00:00Z") == T0
    assert instant("2026-01-01 00:00:00") == T0
    assert instant(T0.timestamp()) == instant(T0.timestamp() * 1000) == T0
    assert instant(None) is None


# --- the table agrees with what the stack deploys ------------------------------------------

def test_default_build_environments_are_the_stacks_defaults() -> None:
    train = "BUILD_GENERAL1_" + COMPUTE_TYPES[Config().train_compute]
    assert DEFAULT_BUILD_ENVIRONMENTS["TrainModel"] == ("LINUX_CONTAINER", train)
    assert Config().cluster_architecture == "amd64"
    builds = (REPO / "infra" / "constructs" / "builds.py").read_text()
    assert 'compute = "LARGE" if arm64 else "MEDIUM"' in builds  # x86 image builds: MEDIUM
    assert DEFAULT_BUILD_ENVIRONMENTS["BuildImage"] == ("LINUX_CONTAINER",
                                                        "BUILD_GENERAL1_MEDIUM")


def test_the_functions_architecture_is_the_stacks() -> None:
    functions = (REPO / "infra" / "constructs" / "functions.py").read_text()
    assert "architecture=lambda_.Architecture.ARM_64" in functions
    assert LAMBDA_ARCHITECTURE == "arm64"


def test_every_price_names_its_source_and_the_defaults_are_priced() -> None:
    prices = [pricing.STATE_TRANSITION, pricing.LAMBDA_REQUEST,
              *pricing.LAMBDA_GB_SECOND.values(), *pricing.BUILD_MINUTE.values()]
    assert all(p.usd > 0 and p.source.startswith("https://aws.amazon.com/") for p in prices)
    assert set(DEFAULT_BUILD_ENVIRONMENTS.values()) <= set(pricing.BUILD_MINUTE)
    datetime.strptime(pricing.PRICES_AS_OF, "%Y-%m-%d")


def test_a_function_out_of_memory_or_timed_out_ran_and_is_billed() -> None:
    """Lambda.Unknown is how Step Functions names an invocation that ran out of memory or
    time (AWS: "Handle transient Lambda service exceptions"): it ran, so it is billed."""
    events = [event("TaskStateEntered", 0, name="RegisterModel"),
              *lambda_attempt(0, 3000, "TaskFailed", error="Lambda.Unknown", cause="OOM")]
    [register] = receipt(events).lambda_functions
    assert (register.invocations, register.billed_ms) == (1, 3000)


def test_a_build_the_execution_was_stopped_in_is_billed_to_the_stop() -> None:
    """StopExecution during BuildImage: no task end event, the build still ran (and was
    billed) until then; a redrive's new build is a second build."""
    stopped = [event("TaskStateEntered", 0, name="BuildImage"),
               event("TaskScheduled", 0, resourceType="codebuild"),
               event("TaskStarted", 0, resourceType="codebuild"),
               event("ExecutionAborted", 90_000)]
    [build] = receipt(stopped).builds
    assert (build.step, build.billed_minutes) == ("BuildImage", 2)
    redriven = [*stopped, event("ExecutionRedriven", 95_000, redriveCount=1),
                event("TaskStateEntered", 95_000, name="BuildImage"),
                *build_attempt(95_000, 125_000, None)]
    assert [(b.step, b.billed_minutes) for b in receipt(redriven).builds] == [
        ("BuildImage", 2), ("BuildImage", 1)]
