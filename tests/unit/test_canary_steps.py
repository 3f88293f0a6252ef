"""The canary loop's steps (trainship.canary_steps: ShiftTraffic and JudgeCanary) and
DeployModel's choice of a canary, with a fake cluster driver whose instances answer
/metrics with real Prometheus text (prometheus_client, with the inference service's metric
names and latency buckets, trainship/serving/metrics.py). The state goes through JSON
between steps, as the state machine passes it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from tests.helpers import FakeDriver, handle, state
from trainship import auth, canary_steps, registry, request, steps
from trainship.canary import Policy
from trainship.cluster import Applied
from trainship.config import ROLLOUTS, Settings
from trainship.errors import CanaryFailed, document_from_json
from trainship.image_pins import NoImagePins
from trainship.serving import metrics
from trainship.state import CanaryState, DeploymentState, Handle, RolloutState

NEW, LIVE = "2", "1"


class Instance:
    """One serving process (or pod) of a version: its counters since it started, rendered
    as its /metrics text. A restart is a new Instance (counters from zero)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("trainship_requests", "Requests by path and status.",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram("trainship_request_seconds", "Latency of /invocations.",
                                 buckets=metrics.LATENCY_BUCKETS, registry=self.registry)
        self.answering = True

    def answer(self, count: int, status: int = 200, seconds: float = 0.02) -> Instance:
        for _ in range(count):
            self.requests.labels(metrics.INVOCATIONS, str(status)).inc()
            self.latency.observe(seconds)
        return self

    def text(self) -> str:
        return generate_latest(self.registry).decode()


class CanaryDriver(FakeDriver):
    """The fake driver with a traffic split and /metrics: ``instances`` per version and
    key; ``set_traffic`` records the share (it must be called under the model's lock) and
    reports ``effective`` (default: the share asked)."""

    def __init__(self, live_version: str = LIVE) -> None:
        super().__init__([])
        self.instances: dict[str, dict[str, Instance]] = {
            NEW: {"new-a": Instance()}, LIVE: {"old-a": Instance()}}
        self.shares: list[int] = []
        self.effective: int | None = None
        self.locked = False
        self.live_version = live_version
        self.applied: list[Any] = []

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.locked = True
        try:
            yield
        finally:
            self.locked = False

    def lock(self, model_name: str) -> Any:
        return self._lock()

    def set_traffic(self, handle: Handle, percent: int) -> int:
        assert self.locked, "set_traffic outside lock(model_name)"
        assert handle["version"] == NEW
        self.shares.append(percent)
        return percent if self.effective is None else self.effective

    def scrape(self, model_name: str) -> dict[str, dict[str, str]]:
        return {version: {key: i.text() for key, i in instances.items() if i.answering}
                for version, instances in self.instances.items()}

    def apply(self, spec: Any) -> Applied:
        self.applied.append(spec)
        return Applied("http://h", handle(NEW), live_version=self.live_version)


def canary_state(tmp_path: Path, policy: Policy | None = None) -> DeploymentState:
    """The state as DeployModel leaves it for a canary of v2 beside v1."""
    return state(
        tmp_path, model={"name": "m", "version": NEW, "run_id": "r",
                         "model_uri": "models:/m/2", "source": "s"},
        rollout=RolloutState(handle=handle(NEW), live_version=LIVE, ready=True,
                             inference_url="http://h").model_dump(),
        canary=CanaryState.start(policy or Policy(min_requests=20), new_version=NEW,
                                 live_version=LIVE).model_dump())


def through_json(s: DeploymentState) -> DeploymentState:
    return DeploymentState.model_validate(json.loads(json.dumps(s.out())))


def shift(s: DeploymentState, driver: CanaryDriver) -> DeploymentState:
    return through_json(canary_steps.shift_traffic(s, driver=driver))  # type: ignore[arg-type]


def judge(s: DeploymentState, driver: CanaryDriver) -> DeploymentState:
    return through_json(canary_steps.judge_canary(s, driver=driver))  # type: ignore[arg-type]


def failed(s: DeploymentState, driver: CanaryDriver) -> tuple[CanaryFailed, dict[str, Any]]:
    with pytest.raises(CanaryFailed) as caught:
        canary_steps.judge_canary(s, driver=driver)  # type: ignore[arg-type]
    doc = document_from_json(str(caught.value))
    assert doc is not None and doc.error == "CanaryFailed" and doc.step == "JudgeCanary"
    return caught.value, json.loads(doc.details)


# --- ShiftTraffic and JudgeCanary ------------------------------------------------------

def test_a_healthy_canary_moves_through_every_step_and_promotes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    driver = CanaryDriver()
    new, old = driver.instances[NEW]["new-a"], driver.instances[LIVE]["old-a"]
    old.answer(1000)  # what it answered before the canary counts in no step
    new.answer(1)  # the smoke test
    s = canary_state(tmp_path)
    answered = {NEW: 1, LIVE: 1000}
    for share, action in ((10, "next"), (50, "next"), (100, "promote")):
        s = shift(s, driver)
        assert s.canary is not None and s.canary.share == share
        assert {v: s.canary.baseline[v][k].requests
                for v, k in ((NEW, "new-a"), (LIVE, "old-a"))} == answered
        new.answer(share), old.answer(100 - share)
        answered = {NEW: answered[NEW] + share, LIVE: answered[LIVE] + 100 - share}
        s = judge(s, driver)
        assert s.canary is not None and s.canary.action == action
        last = s.canary.history[-1]
        assert last["action"] == action and last["share"] == share
        assert last["effective_share"] == share and last["instances"] == {"new": 1, "old": 1}
        assert last["numbers"]["new"]["requests"] == share
        assert last["numbers"]["old"]["requests"] == 100 - share
        assert last["numbers"]["new"]["errors"] == 0
    assert driver.shares == [10, 50, 100]
    assert s.canary.step == 2 and len(s.canary.history) == 3
    # PromoteModel reports every step
    monkeypatch.setattr(registry, "promote", lambda **kw: False)
    settings = Settings(staging_uri="", tracking_uri="", cluster="process", model_alias="live",
                        rollout_timeout_seconds=600, rollout_poll_seconds=1,
                        state_machine_arn="", archive_dir="", home=tmp_path)
    s = steps.promote_model(s, settings=settings, driver=driver,  # type: ignore[arg-type]
                            pins=NoImagePins())
    assert s.result is not None and s.result.canary == s.canary.history
    assert [step["share"] for step in s.result.canary] == [10, 50, 100]


def test_the_effective_share_is_recorded_beside_the_one_asked(tmp_path: Path) -> None:
    driver = CanaryDriver()
    driver.effective = 33  # e.g. one of three replicas
    s = shift(canary_state(tmp_path), driver)
    assert s.canary is not None and (s.canary.share, s.canary.effective_share) == (10, 33)
    driver.instances[NEW]["new-a"].answer(30)
    s = judge(s, driver)
    assert s.canary is not None
    assert (s.canary.history[0]["share"], s.canary.history[0]["effective_share"]) == (10, 33)


def test_errors_over_the_limit_roll_back_with_the_numbers_that_decided_it(
        tmp_path: Path) -> None:
    driver = CanaryDriver()
    new, old = driver.instances[NEW]["new-a"], driver.instances[LIVE]["old-a"]
    s = shift(canary_state(tmp_path, Policy(min_requests=20, max_error_rate=0.05)), driver)
    new.answer(20), new.answer(10, status=503), old.answer(270)
    old.answer(3, status=500)
    exc, details = failed(s, driver)
    verdict = details["verdict"]
    assert verdict["action"] == "rollback" and "error rate" in verdict["reason"]
    assert verdict["numbers"]["new"]["requests"] == 30
    assert verdict["numbers"]["new"]["errors"] == 10
    assert verdict["numbers"]["new"]["error_rate"] == pytest.approx(10 / 30)
    assert verdict["numbers"]["old"]["requests"] == 273
    assert verdict["numbers"]["old"]["errors"] == 3
    assert verdict["numbers"]["max_error_rate"] == 0.05 and verdict["numbers"]["share"] == 10
    assert (details["new_version"], details["live_version"]) == (NEW, LIVE)
    assert [step["action"] for step in details["history"]] == ["rollback"]
    assert details["history_omitted"] == 0
    assert "v1 keeps the URL and all of the traffic" in exc.message
    assert "all-at-once" in exc.help and "--max-error-rate" in exc.help


def test_a_rollback_at_a_later_step_carries_the_earlier_steps(tmp_path: Path) -> None:
    driver = CanaryDriver()
    new = driver.instances[NEW]["new-a"]
    s = shift(canary_state(tmp_path), driver)
    new.answer(25)
    s = judge(s, driver)
    s = shift(s, driver)
    new.answer(10), new.answer(20, status=500)
    _, details = failed(s, driver)
    assert [(h["share"], h["action"]) for h in details["history"]] == [
        (10, "next"), (50, "rollback")]
    assert details["verdict"]["numbers"]["step"] == 2
    assert details["verdict"]["numbers"]["new"]["errors"] == 20


def test_a_new_version_no_instance_of_which_answers_is_rolled_back(tmp_path: Path) -> None:
    driver = CanaryDriver()
    s = shift(canary_state(tmp_path), driver)
    driver.instances[LIVE]["old-a"].answer(100)
    driver.instances[NEW]["new-a"].answering = False
    exc, details = failed(s, driver)
    assert "not serving" in exc.message
    assert details["verdict"]["numbers"]["new"] is None
    assert details["verdict"]["numbers"]["old"]["requests"] == 100
    assert details["history"][0]["instances"] == {"new": 0, "old": 1}
    # gone from the scrape altogether: the same
    del driver.instances[NEW]
    exc, _ = failed(s, driver)
    assert "not serving" in exc.message


def test_a_restarted_instance_counts_from_zero_and_the_others_from_the_baseline(
        tmp_path: Path) -> None:
    """pod-b restarts during the step: its counters went down, so only what it answered
    since the restart counts; a sum over the pods would have hidden its errors."""
    driver = CanaryDriver()
    driver.instances[NEW] = {"pod-a": Instance().answer(500), "pod-b": Instance().answer(600)}
    s = shift(canary_state(tmp_path, Policy(min_requests=20, max_error_rate=0.1)), driver)
    driver.instances[NEW]["pod-a"].answer(20)
    driver.instances[NEW]["pod-b"] = Instance().answer(5).answer(15, status=500)
    _, details = failed(s, driver)
    new = details["verdict"]["numbers"]["new"]
    assert (new["requests"], new["errors"]) == (40, 15)


def test_a_new_instance_counts_from_zero_and_a_gone_one_adds_nothing(tmp_path: Path) -> None:
    driver = CanaryDriver()
    driver.instances[NEW] = {"pod-a": Instance().answer(50)}
    s = shift(canary_state(tmp_path), driver)
    driver.instances[NEW] = {"pod-c": Instance().answer(22)}
    s = judge(s, driver)
    assert s.canary is not None
    assert s.canary.history[0]["numbers"]["new"]["requests"] == 22
    assert s.canary.history[0]["instances"]["new"] == 1


def test_errors_before_the_step_do_not_count(tmp_path: Path) -> None:
    driver = CanaryDriver()
    new = driver.instances[NEW]["new-a"]
    new.answer(40, status=500)  # before ShiftTraffic: not in the step's window
    s = shift(canary_state(tmp_path), driver)
    new.answer(30)
    s = judge(s, driver)
    assert s.canary is not None and s.canary.action == "next" and s.canary.step == 1
    assert s.canary.history[0]["numbers"]["new"]["errors"] == 0


@pytest.mark.parametrize("no_traffic, last", [("promote", False), ("promote", True),
                                              ("rollback", False)])
def test_too_few_requests_follow_the_no_traffic_policy(tmp_path: Path, no_traffic: Any,
                                                       last: bool) -> None:
    driver = CanaryDriver()
    s = canary_state(tmp_path, Policy(steps=(100,) if last else (10, 100), min_requests=20,
                                      no_traffic=no_traffic))
    s = shift(s, driver)
    driver.instances[NEW]["new-a"].answer(3)
    if no_traffic == "rollback":
        _, details = failed(s, driver)
        assert details["verdict"]["numbers"]["new"]["requests"] == 3
        return
    s = judge(s, driver)
    assert s.canary is not None
    assert s.canary.action == ("promote" if last else "next")
    assert "without a verdict" in s.canary.history[0]["reason"]


def test_latency_over_the_limit_rolls_back(tmp_path: Path) -> None:
    driver = CanaryDriver()
    s = shift(canary_state(tmp_path, Policy(min_requests=20, max_p99_ms=200)), driver)
    driver.instances[NEW]["new-a"].answer(30, seconds=0.8)
    _, details = failed(s, driver)
    assert details["verdict"]["numbers"]["new"]["p99_ms"] > 200
    assert details["verdict"]["numbers"]["max_p99_ms"] == 200


def test_an_unreadable_instance_is_left_out(tmp_path: Path) -> None:
    """An old version's image from before the service's metrics: its text is no
    trainship /metrics, and the old version's numbers decide nothing anyway."""
    driver = CanaryDriver()

    class OldImage(Instance):
        def text(self) -> str:
            return "# HELP python_info x\n# TYPE python_info gauge\npython_info 1.0\n"

    driver.instances[LIVE] = {"old-a": OldImage()}
    s = shift(canary_state(tmp_path), driver)
    assert s.canary is not None and s.canary.baseline[LIVE] == {}
    driver.instances[NEW]["new-a"].answer(25)
    s = judge(s, driver)
    assert s.canary is not None and s.canary.action == "next"
    assert s.canary.history[0]["instances"] == {"new": 1, "old": 0}
    assert s.canary.history[0]["numbers"]["old"]["requests"] == 0


def test_the_baseline_keeps_the_histogram_through_json(tmp_path: Path) -> None:
    driver = CanaryDriver()
    driver.instances[NEW]["new-a"].answer(3, seconds=0.3)
    s = shift(canary_state(tmp_path), driver)
    assert s.canary is not None
    sample = s.canary.baseline[NEW]["new-a"].sample()
    assert sample.buckets[-1] == (float("inf"), 3.0)
    assert dict(sample.buckets)[0.25] == 0.0 and dict(sample.buckets)[0.5] == 3.0
    assert "Infinity" not in json.dumps(s.out())


def test_the_details_stay_short_enough_for_an_executions_cause(tmp_path: Path) -> None:
    s = canary_state(tmp_path, Policy(steps=tuple(range(1, 101)), min_requests=1))
    assert s.canary is not None
    verdict = {"action": "next", "reason": "x" * 300, "numbers": {"new": {"requests": 1}}}
    s.canary.history = [{**verdict, "share": n, "effective_share": n} for n in range(1, 100)]
    from trainship.canary import Verdict
    text = canary_steps.failure_details(Verdict("rollback", "the last one", {}), s.canary)
    details = json.loads(text)
    assert len(text) <= canary_steps.MAX_DETAILS_CHARS
    assert details["history_omitted"] > 0
    assert details["history"][-1]["share"] == 99  # the latest steps are kept
    assert details["verdict"]["reason"] == "the last one"


def test_the_steps_refuse_a_state_without_a_canary(tmp_path: Path) -> None:
    s = state(tmp_path)
    with pytest.raises(ValueError, match="no canary"):
        canary_steps.shift_traffic(s, driver=CanaryDriver())  # type: ignore[arg-type]


# --- DeployModel: when a canary applies ------------------------------------------------

def settings(tmp_path: Path, default_rollout: str = "canary") -> Settings:
    return Settings(staging_uri="", tracking_uri="", cluster="process", model_alias="live",
                    rollout_timeout_seconds=600, rollout_poll_seconds=1,
                    state_machine_arn="", archive_dir="", home=tmp_path,
                    default_rollout=default_rollout)


def to_deploy(tmp_path: Path, **extra: Any) -> DeploymentState:
    return state(tmp_path, model={"name": "m", "version": NEW, "run_id": "r",
                                  "model_uri": "models:/m/2", "source": "s"},
                 image={"build_id": "b", "exported_variables": [
                     {"Name": "IMAGE_URI", "Value": "img:m-v2"}]}, **extra)


def deploy(tmp_path: Path, driver: CanaryDriver, default: str = "canary",
           **extra: Any) -> DeploymentState:
    return through_json(steps.deploy_model(
        to_deploy(tmp_path, **extra), settings=settings(tmp_path, default),
        driver=driver))  # type: ignore[arg-type]


def test_deploy_model_sets_the_canary_with_a_live_version(tmp_path: Path) -> None:
    driver = CanaryDriver()
    s = deploy(tmp_path, driver)  # the request names no rollout: the stack's default
    assert driver.applied[-1].canary is True
    assert s.rollout is not None and s.rollout.live_version == LIVE
    assert s.canary is not None and s.canary.policy() == Policy()
    assert (s.canary.new_version, s.canary.live_version, s.canary.step) == (NEW, LIVE, 0)
    asked = deploy(tmp_path, driver, release={"strategy": "canary", "steps": [5, 100],
                                              "interval_seconds": 30, "max_p99_ms": 250})
    assert asked.canary is not None and asked.canary.steps == [5, 100]
    assert (asked.canary.interval_seconds, asked.canary.max_p99_ms) == (30, 250)


def test_deploy_model_goes_all_at_once_otherwise(tmp_path: Path) -> None:
    driver = CanaryDriver()
    s = deploy(tmp_path, driver, default="all-at-once")
    assert s.canary is None and driver.applied[-1].canary is False
    s = deploy(tmp_path, driver, release={"strategy": "all-at-once"})
    assert s.canary is None and driver.applied[-1].canary is False
    # a rollback: all at once whatever the default
    s = deploy(tmp_path, driver, rollback={"replaced_version": "3"})
    assert s.canary is None and driver.applied[-1].canary is False
    assert driver.applied[-1].replace_higher is True
    # a first deployment: asked as a canary, but there is nothing to share with
    first = CanaryDriver(live_version="")
    s = deploy(tmp_path, first)
    assert first.applied[-1].canary is True and s.canary is None
    assert s.rollout is not None and s.rollout.live_version == ""


def test_a_redrive_at_deploy_model_starts_the_canary_over(tmp_path: Path) -> None:
    driver = CanaryDriver()
    s = deploy(tmp_path, driver)
    s = shift(s, driver)
    driver.instances[NEW]["new-a"].answer(25)
    s = judge(s, driver)
    assert s.canary is not None and s.canary.step == 1 and s.canary.history
    again = through_json(steps.deploy_model(s, settings=settings(tmp_path),
                                            driver=driver))  # type: ignore[arg-type]
    assert again.canary is not None and again.canary.step == 0
    assert again.canary.history == [] and again.canary.baseline == {}


def test_the_stacks_default_rollout_comes_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert ROLLOUTS == request.STRATEGIES
    monkeypatch.delenv("TRAINSHIP_DEFAULT_ROLLOUT", raising=False)
    assert Settings.from_env().default_rollout == "canary"
    monkeypatch.setenv("TRAINSHIP_DEFAULT_ROLLOUT", " All-At-Once ")
    assert Settings.from_env().default_rollout == "all-at-once"
    monkeypatch.setenv("TRAINSHIP_DEFAULT_ROLLOUT", "blue-green")
    with pytest.raises(ValueError, match="TRAINSHIP_DEFAULT_ROLLOUT"):
        Settings.from_env()


# --- the model's auth through a canary (trainship.model_auth) ---------------------------

def canary_deployment(tmp_path: Path, driver: CanaryDriver, verdicts: int, *,
                      auth_mode: str | None, errors: bool = False) -> DeploymentState:
    """DeployModel, SmokeTestModel, then ShiftTraffic/JudgeCanary ``verdicts`` times (the
    new version answering 25 requests a step, 5xx when ``errors``), as the state machine
    chains them: CanaryFailed propagates."""
    extra = {"auth": auth_mode} if auth_mode else {}
    s = deploy(tmp_path, driver, release={"strategy": "canary", "steps": [50, 100]}, **extra)
    s = through_json(steps.smoke_test(s, settings=settings(tmp_path),
                                      driver=driver))  # type: ignore[arg-type]
    for _ in range(verdicts):
        s = shift(s, driver)
        driver.instances[NEW]["new-a"].answer(25, status=500 if errors else 200)
        s = judge(s, driver)
    return s


@pytest.fixture
def no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "serving_input_example", lambda *a: {"inputs": [[1.0]]})
    monkeypatch.setattr(registry, "promote", lambda **kw: False)


@pytest.mark.usefixtures("no_registry")
def test_a_token_turned_on_is_delivered_after_the_canary_and_kept_open_during_it(
        tmp_path: Path) -> None:
    """none -> token: both versions read the one auth file, which stays open through the
    canary (the live version's clients send no token yet) until PromoteModel delivers the
    token, as without a canary."""
    driver = CanaryDriver()
    driver.auth["m"] = auth.render(auth.open_file())
    s = canary_deployment(tmp_path, driver, 2, auth_mode="token")
    assert s.canary is not None and s.canary.action == "promote"
    assert auth.parse(driver.auth["m"]).open  # through the whole canary
    s = steps.promote_model(s, settings=settings(tmp_path), driver=driver,  # type: ignore[arg-type]
                            pins=NoImagePins())
    assert s.result is not None and s.result.auth == "token" and s.result.inference_token
    assert s.result.canary is not None and len(s.result.canary) == 2
    written = auth.parse(driver.auth["m"])
    assert not written.open and [e.kind for e in written.entries] == ["token"]


@pytest.mark.usefixtures("no_registry")
def test_a_rolled_back_canary_is_recorded_and_leaves_the_models_auth_as_it_was(
        tmp_path: Path) -> None:
    """A model with a token: a canary that fails goes to RecordFailure like any failure
    (the Catch hands it JudgeCanary's input and the error): the new version discarded (the
    live one keeps all of the traffic), its smoke entry gone, the token kept, and the error
    document is CanaryFailed's with its numbers."""
    driver = CanaryDriver()
    token = "tsk_delivered"
    driver.auth["m"] = auth.render(auth.with_token(auth.AuthFile(), auth.digest(token),
                                                   pending=False))
    before = driver.auth["m"]
    s = canary_deployment(tmp_path, driver, 0, auth_mode=None)
    assert s.model_auth is not None and s.model_auth.mode == "token"
    assert driver.auth["m"] != before  # the smoke test's entry, while the canary runs
    s = shift(s, driver)
    driver.instances[NEW]["new-a"].answer(25, status=500)
    with pytest.raises(CanaryFailed) as caught:
        canary_steps.judge_canary(s, driver=driver)  # type: ignore[arg-type]
    context = steps.FailureContext.model_validate({**s.out(), "failure": {
        "Error": "CanaryFailed", "Cause": json.dumps({"errorMessage": str(caught.value),
                                                      "errorType": "CanaryFailed"})}})
    recorded = steps.record_failure(context, cluster=lambda: driver)  # type: ignore[arg-type, return-value]
    assert recorded["error"] == "CanaryFailed"
    doc = document_from_json(recorded["cause"])
    assert doc is not None and doc.step == "JudgeCanary"
    assert json.loads(doc.details)["verdict"]["numbers"]["new"]["errors"] == 25
    assert s.rollout is not None and driver.discarded == [s.rollout.handle]
    assert driver.auth["m"] == before
    assert auth.allows(auth.parse(driver.auth["m"]), token, 1_900_000_000.0)
