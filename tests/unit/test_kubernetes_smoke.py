"""SmokeTestModel on Kubernetes: the model's input example through the API server's pod proxy,
against the fake Kubernetes API (tests/unit/fake_kube.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import state as make_state
from tests.unit.fake_kube import TOKEN, pod, spec
from trainship import steps
from trainship.errors import RolloutFailed
from trainship.state import Handle, RolloutState

# --- the smoke test through the pod proxy (issue 10, items 3 and 4) ---------------------

EXAMPLE = {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0]]}}


def ready_pod(version: str, suffix: str = "abc", ready: bool = True) -> dict[str, Any]:
    p = pod(version)
    p["metadata"]["name"] = f"iris-{version}-{suffix}"
    p["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return p


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def smoke_state(tmp_path: Path, handle: Handle, url: str, deadline: float) -> Any:
    return make_state(tmp_path, model={
        "deployment_id": "d-1", "name": "iris", "version": handle["version"], "run_id": "r",
        "model_uri": "models:/m-1", "source": "s"},
        rollout=RolloutState(deadline=deadline, handle=handle, inference_url=url,
                             ready=True).model_dump())


@pytest.fixture()
def example(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainship import registry

    monkeypatch.setattr(registry, "serving_input_example", lambda *a: EXAMPLE)


def settings() -> Any:
    from trainship.config import Settings

    return Settings.from_env()


@pytest.mark.parametrize("url", [
    "http://a1b2c3-1234567890.elb.eu-west-1.invalid",  # an NLB whose DNS is not there yet
    "http://iris.trainship.svc.cluster.local",  # ClusterIP: cluster DNS, not from Lambda
])
def test_smoke_test_reaches_the_new_pod_through_the_api_server(kube, tmp_path, example,
                                                                url) -> None:
    fake, driver = kube
    handle = driver.apply(spec("2")).handle
    fake.pods = [[ready_pod("1", "old"), ready_pod("2", "new", ready=False),
                  ready_pod("2", "xyz")]]
    fake.proxy_answers = [(200, {"predictions": [1]})]
    clock = Clock()
    s = smoke_state(tmp_path, handle, url, deadline=clock.now + 300)
    s = steps.smoke_test(s, settings=settings(), driver=driver, sleep=clock.sleep,
                         clock=clock.time)
    assert s.smoke_test is not None and s.smoke_test.ran
    assert '"predictions": [1]' in s.smoke_test.message
    proxied = [c for c in fake.calls if "/proxy/" in c.path]
    assert [(c.method, c.path) for c in proxied] == [
        ("POST", "/api/v1/namespaces/trainship/pods/iris-2-xyz:8080/proxy/invocations")]
    assert proxied[0].body == EXAMPLE and proxied[0].content_type == "application/json"
    assert proxied[0].authorization == f"Bearer {TOKEN}"
    assert not clock.slept


def test_smoke_test_retries_until_the_pod_answers(kube, tmp_path, example) -> None:
    fake, driver = kube
    handle = driver.apply(spec("1")).handle
    fake.pods = [[ready_pod("1", ready=False)], [ready_pod("1")]]  # not ready, then ready
    fake.proxy_answers = [
        (503, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
               "reason": "ServiceUnavailable",
               "message": "error trying to reach service: dial tcp 10.0.1.7:8080: connect: "
                          "connection refused"}),
        (503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "loading"}),  # the model
        (200, {"predictions": [0]})]
    clock = Clock()
    s = smoke_state(tmp_path, handle, "", deadline=clock.now + 300)
    s = steps.smoke_test(s, settings=settings(), driver=driver, sleep=clock.sleep,
                         clock=clock.time)
    assert s.smoke_test is not None and s.smoke_test.ran
    assert clock.slept == [1.0, 2.0, 4.0]  # backoff between the four attempts


def test_smoke_test_model_error_fails_at_once(kube, tmp_path, example) -> None:
    fake, driver = kube
    handle = driver.apply(spec("1")).handle
    fake.pods = [[ready_pod("1")]]
    fake.proxy_answers = [(400, {"error_code": "BAD_REQUEST",
                                 "message": "Failed to enforce schema: column b missing"})]
    clock = Clock()
    s = smoke_state(tmp_path, handle, "", deadline=clock.now + 300)
    with pytest.raises(RolloutFailed) as raised:
        steps.smoke_test(s, settings=settings(), driver=driver, sleep=clock.sleep,
                         clock=clock.time)
    assert "HTTP 400" in raised.value.message and "column b missing" in raised.value.details
    assert raised.value.step == "SmokeTestModel" and not clock.slept


def test_smoke_test_without_pods_proxy_permission_names_it(kube, tmp_path, example) -> None:
    fake, driver = kube
    handle = driver.apply(spec("1")).handle
    fake.pods = [[ready_pod("1")]]
    fake.proxy_forbidden = True
    clock = Clock()
    with pytest.raises(RolloutFailed) as raised:
        steps.smoke_test(smoke_state(tmp_path, handle, "", deadline=clock.now + 300),
                         settings=settings(), driver=driver, sleep=clock.sleep,
                         clock=clock.time)
    assert "403" in raised.value.message and "pods/proxy" in raised.value.help
    assert not clock.slept


def test_smoke_test_gives_up_at_the_rollout_deadline(kube, tmp_path, example) -> None:
    fake, driver = kube
    handle = driver.apply(spec("1")).handle
    fake.pods = [[ready_pod("1")]]
    fake.proxy_answers = [(502, "upstream went away")]
    clock = Clock()
    start = clock.now
    s = smoke_state(tmp_path, handle, "", deadline=start + 120)
    with pytest.raises(RolloutFailed) as raised:
        steps.smoke_test(s, settings=settings(), driver=driver, sleep=clock.sleep,
                         clock=clock.time)
    assert "before the rollout deadline" in raised.value.message
    assert "HTTP 502" in raised.value.details
    assert start + 100 <= clock.now <= start + 120 and max(clock.slept) == 15.0


def test_smoke_test_hands_back_when_the_lambda_runs_out_of_time(kube, tmp_path,
                                                                example) -> None:
    from trainship.errors import TransientError

    fake, driver = kube
    handle = driver.apply(spec("1")).handle
    fake.pods = [[ready_pod("1", ready=False)]]
    clock = Clock()
    s = smoke_state(tmp_path, handle, "", deadline=clock.now + 600)
    with pytest.raises(TransientError):  # the state machine's Retry calls it again
        steps.smoke_test(s, settings=settings(), driver=driver, budget_seconds=60,
                         sleep=clock.sleep, clock=clock.time)
    assert clock.now <= 1000.0 + 60


def test_smoke_test_of_a_superseded_version_is_skipped(kube, tmp_path, example) -> None:
    fake, driver = kube
    driver.apply(spec("3"))
    handle = driver.apply(spec("2")).handle
    s = smoke_state(tmp_path, handle, "", deadline=1e12)
    s = steps.smoke_test(s, settings=settings(), driver=driver)
    assert s.smoke_test is not None and not s.smoke_test.ran
    assert not [c for c in fake.calls if "/proxy/" in c.path]
