"""A canary on Kubernetes (trainship.cluster.kube_traffic): a second Deployment beside the
live one behind the one Service, the share following their replicas; set_traffic, promote,
discard, remove, status and scrape against the HTTP-level fake API (tests/unit/fake_kube.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from tests.unit.fake_kube import IMAGE, FakeKube, pod, ready_status, spec, status_doc
from trainship.cluster import kube_traffic
from trainship.cluster.kubernetes import KubernetesDriver
from trainship.cluster.manifests import WorkloadSpec, canary_deployment, render
from trainship.errors import RolloutFailed, TransientError
from trainship.pipeline import LAMBDA_STEPS

Kube = tuple[FakeKube, KubernetesDriver]
MAIN = ("Deployment", "trainship", "iris")
CANARY = ("Deployment", "trainship", "iris-canary")


def canary(version: str, **extra: Any) -> WorkloadSpec:
    return replace(spec(version, **extra), canary=True)


def version_of(fake: FakeKube, key: tuple[str, str, str]) -> str:
    return str(fake.objects[key]["metadata"]["annotations"]["trainship.io/model-version"])


def replicas(fake: FakeKube) -> tuple[int, int]:
    """(canary, live) replicas."""
    return (fake.objects[CANARY]["spec"]["replicas"], fake.objects[MAIN]["spec"]["replicas"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


class Clock:
    """The driver's clock and sleep: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def canary_at(kube: Kube, replicas: int, percent: int) -> Any:
    """v1 live, v2 applied as its canary (both ``replicas``), v2 at ``percent``: v2's
    handle."""
    _, driver = kube
    driver.apply(spec("1", replicas=replicas))
    handle = driver.apply(canary("2", replicas=replicas)).handle
    driver.set_traffic(handle, percent)
    return handle


def record_calls(fake: FakeKube, match: Callable[[Any], bool],
                 note: Callable[[Any], Any]) -> list[Any]:
    """Whenever a call to the fake matches, ``note(call)`` (taken before the fake answers)
    is appended to the list returned."""
    noted: list[Any] = []
    original = fake.handle

    def watch(call: Any) -> tuple[int, Any]:
        if match(call):
            noted.append(note(call))
        return original(call)

    fake.handle = watch  # type: ignore[method-assign]
    return noted


def deletes_canary(call: Any) -> bool:
    return bool(call.method == "DELETE" and call.path.endswith("/deployments/iris-canary"))


@pytest.fixture(autouse=True)
def scaled_pods_get_ready(kube: Kube) -> None:
    """Unless a test gives statuses, a scaled Deployment's pods are all ready at once."""
    kube[0].ready_as_scaled = True


@pytest.fixture
def clock(kube: Kube) -> Clock:
    clock = Clock()
    kube[1].sleep, kube[1].clock = clock.sleep, lambda: clock.now
    return clock


def test_a_canary_runs_beside_the_live_deployment_behind_the_one_service(kube: Kube) -> None:
    fake, driver = kube
    driver.apply(spec("1", replicas=4))
    main_before = fake.objects[MAIN]["metadata"]["resourceVersion"]
    applied = driver.apply(canary("2", replicas=4))
    assert applied.live_version == "1"
    handle = applied.handle
    assert handle["canary"] and handle["live_replicas"] == 4
    assert handle["previous"]["version"] == "1"
    # the live Deployment is not touched: same object, same version, same replicas
    assert fake.objects[MAIN]["metadata"]["resourceVersion"] == main_before
    assert version_of(fake, MAIN) == "1" and version_of(fake, CANARY) == "2"
    assert replicas(fake) == (1, 4)
    live, new = fake.objects[MAIN], fake.objects[CANARY]
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE.format(v=2)
    live_pods = live["spec"]["template"]["metadata"]["labels"]
    new_pods = new["spec"]["template"]["metadata"]["labels"]
    # the Service, NetworkPolicy and PDB select both; neither Deployment the other's pods
    for kind in ("Service", "NetworkPolicy", "PodDisruptionBudget"):
        body = fake.objects[(kind, "trainship", "iris")]["spec"]
        selector = body.get("selector") or body.get("podSelector")
        selector = selector.get("matchLabels", selector)
        assert selects(selector, live_pods) and selects(selector, new_pods), kind
    assert not selects(live["spec"]["selector"]["matchLabels"], new_pods)
    assert not selects(new["spec"]["selector"]["matchLabels"], live_pods)
    assert new_pods["app.kubernetes.io/version"] == "v2"
    assert not any(k[0] == "HorizontalPodAutoscaler" for k in fake.objects)


def test_a_canary_takes_out_an_autoscaler_that_would_fight_the_split(kube: Kube) -> None:
    fake, driver = kube
    driver.apply(spec("1", replicas=2))
    hpa = next(o for o in render(spec("1", replicas=2, max_replicas=4))
               if o["kind"] == "HorizontalPodAutoscaler")
    driver.api.apply(hpa)  # as `trainship manifests --max-replicas` users apply it
    driver.apply(canary("2", replicas=2))
    assert ("HorizontalPodAutoscaler", "trainship", "iris") not in fake.objects


def test_without_a_live_version_a_canary_is_an_ordinary_apply(kube: Kube) -> None:
    fake, driver = kube
    applied = driver.apply(canary("1"))
    assert applied.live_version == "" and "canary" not in applied.handle
    assert CANARY not in fake.objects and version_of(fake, MAIN) == "1"
    again = driver.apply(canary("1"))  # the same version again: in place, nothing to share
    assert again.live_version == "" and CANARY not in fake.objects


def test_an_ordinary_apply_names_the_live_version_too(kube: Kube) -> None:
    _, driver = kube
    driver.apply(spec("1"))
    assert driver.apply(spec("2")).live_version == "1"


@pytest.mark.parametrize("total, steps", [
    (4, [(10, (1, 3), 25), (50, (2, 2), 50), (75, (3, 1), 75), (100, (4, 0), 100),
         (0, (0, 4), 0)]),
    (10, [(10, (1, 9), 10), (33, (3, 7), 30), (99, (9, 1), 90), (100, (10, 0), 100)]),
    (1, [(10, (1, 1), 50), (90, (1, 1), 50), (100, (1, 0), 100)]),
    # halves round up (2.5 pods of 5 at 50% are 3); the canary keeps 1 live pod before 100
    (5, [(10, (1, 4), 20), (50, (3, 2), 60), (90, (4, 1), 80)]),
])
def test_set_traffic_scales_the_two_deployments_to_the_share(
        kube: Kube, total: int, steps: list[tuple[int, tuple[int, int], int]]) -> None:
    fake, driver = kube
    driver.apply(spec("1", replicas=total))
    handle = driver.apply(canary("2", replicas=total)).handle
    for percent, wanted, effective in steps:
        assert driver.set_traffic(handle, percent) == effective, percent
        assert replicas(fake) == wanted, percent
    scales = [c for c in fake.calls if c.path.endswith("/scale")]
    assert scales and all(c.method == "PATCH" and c.content_type ==
                          "application/merge-patch+json" for c in scales)
    # the pod templates never change: no pod restarts for a step
    assert version_of(fake, MAIN) == "1" and version_of(fake, CANARY) == "2"


def test_the_growing_deployment_is_scaled_first(kube: Kube) -> None:
    fake, driver = kube
    driver.apply(spec("1", replicas=4))
    handle = driver.apply(canary("2", replicas=4)).handle
    fake.calls.clear()
    driver.set_traffic(handle, 50)
    assert [c.path.rsplit("/", 2)[-2] for c in fake.calls if c.path.endswith("/scale")] == [
        "iris-canary", "iris"]
    fake.calls.clear()
    driver.set_traffic(handle, 0)
    assert [c.path.rsplit("/", 2)[-2] for c in fake.calls if c.path.endswith("/scale")] == [
        "iris", "iris-canary"]


def test_the_shrinking_deployment_waits_for_the_growing_ones_pods(
        kube: Kube, clock: Clock) -> None:
    """The model never has fewer ready pods than before a step (maxUnavailable: 0, as its
    rolling updates): the live Deployment goes down only once the canary's pods are
    available; not in time, a TransientError (the state machine's retry waits on) and the
    live Deployment still whole."""
    fake, driver = kube
    handle = canary_at(kube, 4, 10)
    fake.named_statuses["iris-canary"] = [ready_status(1), ready_status(1), ready_status(2)]
    scaled_at = record_calls(fake, lambda call: call.path.endswith("/scale"),
                             lambda call: (call.path.rsplit("/", 2)[-2], len(clock.slept)))
    assert driver.set_traffic(handle, 50) == 50
    # the canary first; the live one after waiting, once the canary reported 2 available
    assert scaled_at[0] == ("iris-canary", 0) and scaled_at[1][0] == "iris" and \
        scaled_at[1][1] >= 1 and len(scaled_at) == 2
    assert fake.named_statuses["iris-canary"] == [ready_status(2)]
    assert replicas(fake) == (2, 2)

    fake.named_statuses["iris-canary"] = [ready_status(2)]  # the 3rd pod never gets ready
    clock.slept.clear()
    with pytest.raises(TransientError, match="3 ready pods of iris-canary before iris"):
        driver.set_traffic(handle, 75)
    assert replicas(fake) == (3, 2)  # the live Deployment was not scaled down
    assert sum(clock.slept) <= kube_traffic.STEP_WAIT_SECONDS


def test_set_traffic_refuses_what_it_cannot_do(kube: Kube) -> None:
    _, driver = kube
    first = driver.apply(spec("1")).handle
    with pytest.raises(ValueError, match="percentage"):
        driver.set_traffic(first, 150)
    assert driver.set_traffic(first, 100) == 100  # applied in place: it has everything
    with pytest.raises(ValueError, match="not applied beside a live version"):
        driver.set_traffic(first, 50)
    handle = driver.apply(canary("2")).handle
    driver.apply(canary("3"))  # a later canary takes the canary Deployment
    with pytest.raises(RolloutFailed, match="no longer runs v2"):
        driver.set_traffic(handle, 50)


@pytest.mark.parametrize("code, error", [(403, RolloutFailed), (503, TransientError)])
def test_a_refused_scale_is_named_for_the_state_machine(kube: Kube, code: int,
                                                         error: type[Exception]) -> None:
    fake, driver = kube
    driver.apply(spec("1", replicas=2))
    handle = driver.apply(canary("2", replicas=2)).handle
    fake.scale = lambda call, key: (code, status_doc(code, "no"))  # type: ignore[method-assign]
    with pytest.raises(error, match=f"scaling iris's Deployments to 50% for v2: .*{code}") \
            as raised:
        driver.set_traffic(handle, 50)
    assert raised.value.step == "ShiftTraffic"  # type: ignore[attr-defined]


def test_promote_after_a_canary_updates_the_live_deployment_then_deletes_the_canary(
        kube: Kube, clock: Clock) -> None:
    fake, driver = kube
    fake.load_balancer = {"ingress": [{"hostname": "abc.elb.amazonaws.com"}]}
    driver.apply(spec("1", replicas=2))
    applied = driver.apply(canary("2", replicas=2))
    driver.set_traffic(applied.handle, 100)
    service_before = fake.objects[("Service", "trainship", "iris")]["spec"]
    rolling = {"observedGeneration": 99, "replicas": 1, "updatedReplicas": 1,
               "availableReplicas": 0}
    # promote reads the live Deployment, then waits while it rolls out
    fake.named_statuses["iris"] = [rolling, rolling, ready_status(2, generation=99)]
    assert driver.promote(applied.handle) is None
    assert CANARY not in fake.objects
    live = fake.objects[MAIN]
    assert version_of(fake, MAIN) == "2" and live["spec"]["replicas"] == 2
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE.format(v=2)
    assert live["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "iris"
    assert fake.objects[("Service", "trainship", "iris")]["spec"] == service_before
    assert applied.inference_url == "http://abc.elb.amazonaws.com"
    assert clock.slept == [2.0]  # waited for the live Deployment's new pods once


def test_promote_waits_then_asks_to_be_retried_with_the_canary_still_serving(
        kube: Kube, clock: Clock) -> None:
    fake, driver = kube
    handle = canary_at(kube, 2, 100)
    fake.named_statuses["iris"] = [{"observedGeneration": 99, "replicas": 1,
                                    "updatedReplicas": 1, "availableReplicas": 0}]
    with pytest.raises(TransientError, match="rolling out v2"):
        driver.promote(handle)
    assert CANARY in fake.objects and version_of(fake, MAIN) == "2"
    assert kube_traffic.PROMOTE_WAIT_SECONDS - 2 <= clock.now <= kube_traffic.PROMOTE_WAIT_SECONDS
    patches = sum(c.method == "PATCH" and c.path.endswith("/deployments/iris")
                  for c in fake.calls)
    fake.named_statuses["iris"] = [ready_status(2, generation=99)]
    assert driver.promote(handle) is None  # the state machine's retry
    assert CANARY not in fake.objects
    assert sum(c.method == "PATCH" and c.path.endswith("/deployments/iris")
               for c in fake.calls) == patches  # the live Deployment was not applied again


def test_discarding_a_canary_gives_its_share_back_to_the_live_deployment(
        kube: Kube, clock: Clock) -> None:
    fake, driver = kube
    handle = canary_at(kube, 4, 50)
    fake.named_statuses["iris"] = [ready_status(2)]
    driver.discard(handle)
    assert CANARY not in fake.objects
    assert version_of(fake, MAIN) == "1" and fake.objects[MAIN]["spec"]["replicas"] == 4
    assert ("Service", "trainship", "iris") in fake.objects
    assert clock.slept == []  # the live version had ready pods: nothing to wait for


def test_discarding_after_the_last_step_waits_for_a_live_pod_first(
        kube: Kube, clock: Clock) -> None:
    fake, driver = kube
    handle = canary_at(kube, 2, 100)
    assert replicas(fake) == (2, 0)
    # discard reads the live Deployment, then waits until one of its pods is ready
    fake.named_statuses["iris"] = [{"availableReplicas": 0}, {"availableReplicas": 0},
                                   {"availableReplicas": 0}, {"availableReplicas": 1}]
    deleted_at = record_calls(fake, deletes_canary, lambda _: len(clock.slept))
    driver.discard(handle)
    assert deleted_at == [2]  # after two waits: a live pod was ready
    assert CANARY not in fake.objects and fake.objects[MAIN]["spec"]["replicas"] == 2


def test_discarding_after_a_promotion_began_brings_the_previous_version_back_first(
        kube: Kube, clock: Clock) -> None:
    """PromoteModel updated the live Deployment, its new pods never got ready and the state
    machine gave up (RecordFailure): the live Deployment goes back to v1 and the canary,
    the only version with ready pods, is deleted only once a live pod is ready."""
    fake, driver = kube
    handle = canary_at(kube, 2, 100)
    fake.named_statuses["iris"] = [{"observedGeneration": 99, "replicas": 1,
                                    "updatedReplicas": 1, "availableReplicas": 0}]
    with pytest.raises(TransientError):
        driver.promote(handle)
    assert version_of(fake, MAIN) == "2" and CANARY in fake.objects
    waited = len(clock.slept)
    fake.named_statuses["iris"] = [{"availableReplicas": 0}, {"availableReplicas": 0},
                                   {"availableReplicas": 1}]
    # at the canary's delete: how long it waited, and the live Deployment's version
    deleted_at = record_calls(fake, deletes_canary,
                              lambda _: (len(clock.slept) - waited, version_of(fake, MAIN)))
    driver.discard(handle)
    # the previous version was applied first, and it waited for a ready live pod
    assert len(deleted_at) == 1 and deleted_at[0][0] >= 1 and deleted_at[0][1] == "1"
    assert fake.named_statuses["iris"] == [{"availableReplicas": 1}]  # and read it
    assert CANARY not in fake.objects
    assert version_of(fake, MAIN) == "1" and fake.objects[MAIN]["spec"]["replicas"] == 2
    assert ("Service", "trainship", "iris") in fake.objects


def test_discarding_does_not_wait_forever_for_the_live_version(kube: Kube,
                                                               clock: Clock) -> None:
    fake, driver = kube
    handle = canary_at(kube, 2, 100)
    fake.named_statuses["iris"] = [{"availableReplicas": 0}]
    driver.discard(handle)
    assert CANARY not in fake.objects
    assert clock.now <= kube_traffic.DISCARD_WAIT_SECONDS


def test_a_canary_superseded_by_a_later_one_leaves_it_alone(kube: Kube) -> None:
    fake, driver = kube
    driver.apply(spec("1", replicas=2))
    two = driver.apply(canary("2", replicas=2)).handle
    three = driver.apply(canary("3", replicas=2)).handle  # replaces the canary Deployment
    assert version_of(fake, CANARY) == "3"
    assert driver.promote(two) == "3"  # v2's deployment ends superseded
    driver.discard(two)  # nothing of v3 is touched
    assert version_of(fake, CANARY) == "3" and replicas(fake) == (1, 2)
    lower = driver.apply(canary("2", replicas=2)).handle  # a lower one never replaces it
    assert lower["superseded_by"] == "3" and version_of(fake, CANARY) == "3"
    assert driver.set_traffic(three, 50) == 50


def test_a_higher_version_live_meanwhile_supersedes_the_canary(kube: Kube,
                                                              clock: Clock) -> None:
    fake, driver = kube
    driver.apply(spec("1", replicas=2))
    handle = driver.apply(canary("2", replicas=2)).handle
    driver.apply(spec("3", replicas=2))  # all at once, in place
    assert driver.promote(handle) == "3"
    assert CANARY not in fake.objects and version_of(fake, MAIN) == "3"


def test_a_version_applied_in_place_meanwhile_is_left_as_it_is(kube: Kube,
                                                                 clock: Clock) -> None:
    fake, driver = kube
    handle = canary_at(kube, 4, 50)
    driver.apply(spec("3", replicas=3))  # all at once, in place of v1
    with pytest.raises(RolloutFailed, match="no longer shares the traffic with v1"):
        driver.set_traffic(handle, 75)
    assert fake.objects[MAIN]["spec"]["replicas"] == 3
    driver.discard(handle)  # v2's canary goes; v3 keeps its own replicas
    assert CANARY not in fake.objects
    assert version_of(fake, MAIN) == "3" and fake.objects[MAIN]["spec"]["replicas"] == 3


def test_a_model_named_like_a_canary_is_refused_not_overwritten(kube: Kube) -> None:
    fake, driver = kube
    driver.apply(spec("1"))
    driver.apply(canary("2"))
    other = WorkloadSpec(model_name="iris-canary", version="1", image_uri=IMAGE.format(v=1))
    with pytest.raises(RolloutFailed, match="belongs to the model served as 'iris'"):
        driver.apply(other)
    assert version_of(fake, CANARY) == "2"
    fake.objects.pop(CANARY)
    driver.apply(other)  # now it is the model iris-canary's own Deployment
    with pytest.raises(RolloutFailed, match="belongs to the model served as 'iris-canary'"):
        driver.apply(canary("3"))
    assert fake.objects[CANARY]["metadata"]["annotations"]["trainship.io/model-name"] == \
        "iris-canary"


def test_remove_removes_the_canary_too(kube: Kube) -> None:
    fake, driver = kube
    driver.apply(spec("1"))
    driver.apply(canary("2"))
    removed = driver.remove("iris")
    assert "Deployment/iris-canary in namespace trainship" in removed
    assert not [k for k in fake.objects if k[0] == "Deployment"]


def ready_pod(version: str, suffix: str, ready: bool = True) -> dict[str, Any]:
    p = pod(version)
    p["metadata"]["name"] = f"iris-{version}-{suffix}"
    p["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return p


def test_status_and_smoke_test_of_a_canary_read_its_own_deployment(kube: Kube) -> None:
    fake, driver = kube
    fake.load_balancer = {"ingress": [{"hostname": "abc.elb.amazonaws.com"}]}
    driver.apply(spec("1", replicas=3))
    handle = driver.apply(canary("2", replicas=3)).handle
    fake.named_statuses = {"iris": [ready_status(3)],
                           "iris-canary": [{"observedGeneration": 1, "replicas": 1,
                                            "updatedReplicas": 1, "availableReplicas": 0}]}
    fake.pods = [[ready_pod("1", "a"), ready_pod("2", "c", ready=False)]]
    status = driver.status(handle)
    assert not status.ready and "0/1" not in status.message and "1/1 updated" in status.message
    fake.named_statuses["iris-canary"] = [ready_status(1)]
    fake.pods = [[ready_pod("1", "a"), ready_pod("2", "c")]]
    assert driver.status(handle).ready
    answer = driver.invoke(handle, "/invocations", {"inputs": [[1]]}, timeout=5)
    assert answer is not None and answer.status == 200
    posted = [c.path for c in fake.calls if c.method == "POST" and "/proxy/" in c.path]
    assert posted == ["/api/v1/namespaces/trainship/pods/iris-2-c:8080/proxy/invocations"]


def test_scrape_keys_each_ready_pod_by_its_name(kube: Kube) -> None:
    fake, driver = kube
    fake.pods = [[ready_pod("1", "a"), ready_pod("1", "b"), ready_pod("2", "c"),
                  ready_pod("2", "d", ready=False), ready_pod("3", "e")]]
    fake.metrics = {"iris-1-a": "m1a", "iris-1-b": "m1b", "iris-2-c": "m2c",
                    "iris-2-d": "never asked"}  # iris-3-e does not answer
    assert driver.scrape("iris") == {"1": {"iris-1-a": "m1a", "iris-1-b": "m1b"},
                                     "2": {"iris-2-c": "m2c"}, "3": {}}
    asked = sorted(c.path for c in fake.calls if c.path.endswith("/proxy/metrics"))
    assert asked == [f"/api/v1/namespaces/trainship/pods/iris-{v}:8080/proxy/metrics"
                     for v in ("1-a", "1-b", "2-c", "3-e")]
    assert all(c.method == "GET" for c in fake.calls)


def test_hung_pods_are_left_out_of_a_scrape_without_holding_it_up(
        kube: Kube, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pod gets SCRAPE_TIMEOUT_SECONDS and all are asked at once: six pods that never
    answer cost about one timeout, not six, so a step's function (120 s) is not used up."""
    fake, driver = kube
    monkeypatch.setattr(kube_traffic, "SCRAPE_TIMEOUT_SECONDS", 0.5)
    hung = [ready_pod("2", str(i)) for i in range(6)]
    fake.pods = [[ready_pod("1", "a"), *hung]]
    fake.metrics = {p["metadata"]["name"]: "m" for p in [*fake.pods[0]]}
    fake.metrics_hang = {p["metadata"]["name"]: 5.0 for p in hung}
    started = time.monotonic()
    assert driver.scrape("iris") == {"1": {"iris-1-a": "m"}, "2": {}}
    assert time.monotonic() - started < 6 * 0.5  # one after another would take 3 s or more


def test_the_canary_deployment_renders_like_the_live_one_but_for_its_name() -> None:
    s = spec("2", replicas=3)
    live, new = render(s)[0], canary_deployment(s)
    assert new["metadata"]["name"] == "iris-canary" and new["spec"]["replicas"] == 1
    assert new["spec"]["template"]["spec"] == live["spec"]["template"]["spec"]
    differ = {k for k, v in new["spec"]["template"]["metadata"]["labels"].items()
              if live["spec"]["template"]["metadata"]["labels"][k] != v}
    assert differ == {"app.kubernetes.io/name"}


@pytest.mark.parametrize("state, waits", [
    # set_traffic's wait, then the baseline scrape (its pods at once, one timeout)
    ("ShiftTraffic", kube_traffic.STEP_WAIT_SECONDS + kube_traffic.SCRAPE_TIMEOUT_SECONDS),
    ("JudgeCanary", kube_traffic.SCRAPE_TIMEOUT_SECONDS),
    ("PromoteModel", kube_traffic.PROMOTE_WAIT_SECONDS),
    ("RecordFailure", kube_traffic.DISCARD_WAIT_SECONDS),
])
def test_the_waits_leave_the_function_time_to_answer(state: str, waits: float) -> None:
    """A wait that outlived its Lambda function would end as the function's timeout, which
    the state machine does not retry (a rollback), instead of the TransientError it
    retries: 30 s to spare for the API calls around it."""
    assert waits + 30 <= LAMBDA_STEPS[state].timeout_seconds
