"""The kubernetes driver against an HTTP-level fake Kubernetes API (tests/unit/fake_kube.py):
apply, rollout status, rollback and the races between deployments.

The driver's real code runs: the kubernetes client's ApiClient speaks HTTP to the fake,
which enforces the server-side-apply contract and serves status sequences. The load
balancer, the smoke test and the EKS token have their own modules.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import state as make_state
from tests.unit.fake_kube import (
    IMAGE,
    TOKEN,
    configure,
    pod,
    ready_status,
    spec,
)
from trainship import steps
from trainship.errors import RolloutFailed
from trainship.state import RolloutState


def test_first_apply_creates_namespace_and_uses_server_side_apply(kube) -> None:
    fake, driver = kube
    applied = driver.apply(spec("1"))
    calls = [(c.method, c.path) for c in fake.calls]
    assert calls[:2] == [("GET", "/api/v1/namespaces/trainship"),
                         ("POST", "/api/v1/namespaces")]
    patches = [c for c in fake.calls if c.method == "PATCH"]
    assert [c.path for c in patches] == [
        "/apis/apps/v1/namespaces/trainship/deployments/iris",
        "/api/v1/namespaces/trainship/services/iris",
        "/apis/networking.k8s.io/v1/namespaces/trainship/networkpolicies/iris"]
    for call in patches:
        assert call.content_type == "application/apply-patch+yaml"
        assert call.query == {"fieldManager": ["trainship"], "force": ["true"]}
        assert call.authorization == f"Bearer {TOKEN}"
    assert "resourceVersion" not in patches[0].body["metadata"]  # nothing to guard yet
    deployment = fake.objects[("Deployment", "trainship", "iris")]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE.format(v=1)
    assert applied.handle["previous"] is None and applied.inference_url == ""


def test_progressing_then_ready_with_load_balancer_address(kube) -> None:
    fake, driver = kube
    handle = driver.apply(spec("1", replicas=2)).handle
    fake.deployment_statuses = [
        {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 0,
         "availableReplicas": 0},
        ready_status(2)]
    fake.pods = [[pod("1")]]
    first = driver.status(handle)
    assert not first.ready and not first.failed
    assert "1/2 updated, 0 ready" in first.message
    second = driver.status(handle)  # rolled out, but the load balancer has no address yet
    assert not second.ready and "load balancer" in second.message
    fake.load_balancer = {"ingress": [{"hostname": "abc.elb.amazonaws.com"}]}
    third = driver.status(handle)
    assert third.ready and third.inference_url == "http://abc.elb.amazonaws.com"
    pod_query = next(c for c in fake.calls if c.path.endswith("/pods")).query
    assert pod_query["labelSelector"] == [
        "app.kubernetes.io/instance=iris,app.kubernetes.io/version=v1"]
    assert ("PodDisruptionBudget", "trainship", "iris") in fake.objects


@pytest.mark.parametrize("waiting, logs_expected", [("CrashLoopBackOff", True),
                                                    ("ImagePullBackOff", False),
                                                    ("ErrImagePull", False)])
def test_fatal_pod_reasons_fail_the_rollout(kube, waiting: str, logs_expected: bool) -> None:
    fake, driver = kube
    handle = driver.apply(spec("1")).handle
    fake.deployment_statuses = [{"observedGeneration": 1, "replicas": 1,
                                 "updatedReplicas": 1, "unavailableReplicas": 1}]
    fake.pods = [[pod("1", waiting=waiting)]]
    fake.logs = "Traceback (most recent call last):\nModuleNotFoundError: No module named 'x'"
    status = driver.status(handle)
    assert status.failed and waiting in status.message
    assert ("ModuleNotFoundError" in status.details) is logs_expected
    log_calls = [c for c in fake.calls if c.path.endswith("/log")]
    assert bool(log_calls) is logs_expected
    if logs_expected:
        assert log_calls[0].query["container"] == ["model"]
        assert log_calls[0].query["previous"] == ["true"]


def test_oom_killed_is_named(kube) -> None:
    fake, driver = kube
    handle = driver.apply(spec("1")).handle
    fake.deployment_statuses = [{"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1}]
    fake.pods = [[pod("1", last_terminated="OOMKilled")]]
    status = driver.status(handle)
    assert status.failed and "OOMKilled" in status.message and "memory" in status.message


def test_unschedulable_is_reported_then_fails_at_the_deadline(kube, tmp_path: Path) -> None:
    fake, driver = kube
    handle = driver.apply(spec("1")).handle
    fake.deployment_statuses = [{"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1}]
    fake.pods = [[pod("1", unschedulable=True)]]
    status = driver.status(handle)
    assert not status.failed and "Unschedulable" in status.message
    # CheckRollout: not failed yet, but past the deadline it is a RolloutFailed naming why
    s = make_state(tmp_path, rollout=RolloutState(deadline=100.0, handle=handle).model_dump())
    with pytest.raises(RolloutFailed) as raised:
        steps.check_rollout(s, driver=driver, now=200)
    assert "Insufficient cpu" in raised.value.message


def test_progress_deadline_exceeded_is_failed(kube, tmp_path: Path) -> None:
    fake, driver = kube
    handle = driver.apply(spec("1")).handle
    fake.deployment_statuses = [{"observedGeneration": 1, "replicas": 2, "updatedReplicas": 1,
                                 "conditions": [{"type": "Progressing", "status": "False",
                                                 "reason": "ProgressDeadlineExceeded"}]}]
    s = make_state(tmp_path, rollout=RolloutState(deadline=1e12, handle=handle).model_dump())
    with pytest.raises(RolloutFailed) as raised:
        steps.check_rollout(s, driver=driver)
    assert "ProgressDeadlineExceeded" in raised.value.message


def test_failed_second_version_rolls_back_to_the_first(kube) -> None:
    fake, driver = kube
    driver.apply(spec("1", replicas=2))
    handle = driver.apply(spec("2", replicas=2)).handle
    v2_patch = [c for c in fake.calls if c.method == "PATCH"
                and c.path.endswith("/deployments/iris")][-1]
    assert v2_patch.body["metadata"]["resourceVersion"]  # guarded by the version read
    assert handle["previous"]["version"] == "1"
    assert handle["previous"]["image_uri"] == IMAGE.format(v=1)
    driver.discard(handle)
    deployment = fake.objects[("Deployment", "trainship", "iris")]
    assert deployment["metadata"]["annotations"]["trainship.io/model-version"] == "1"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE.format(v=1)
    assert ("Service", "trainship", "iris") in fake.objects  # the same URL keeps serving


def test_failed_first_version_leaves_nothing(kube) -> None:
    fake, driver = kube
    handle = driver.apply(spec("1")).handle
    driver.discard(handle)
    assert not fake.objects
    assert {c.path.rsplit("/", 2)[-2] for c in fake.calls if c.method == "DELETE"} == {
        "deployments", "services", "networkpolicies", "poddisruptionbudgets",
        "horizontalpodautoscalers"}


def test_lower_version_never_replaces_a_higher_live_one(kube) -> None:
    fake, driver = kube
    driver.apply(spec("3"))
    patches_before = sum(c.method == "PATCH" for c in fake.calls)
    handle = driver.apply(spec("2")).handle
    assert sum(c.method == "PATCH" for c in fake.calls) == patches_before
    assert handle["superseded_by"] == "3"
    assert driver.promote(handle) == "3"
    driver.discard(handle)  # nothing of version 3 is touched
    assert fake.objects[("Deployment", "trainship", "iris")]["metadata"]["annotations"][
        "trainship.io/model-version"] == "3"


def test_concurrent_apply_conflict_is_retried(kube) -> None:
    fake, driver = kube
    driver.apply(spec("1"))
    original = fake.server_side_apply
    bumped: list[int] = []

    def interfere(call, key, api_version, kind):  # another apply lands in between, once
        if kind == "Deployment" and not bumped:
            bumped.append(1)
            fake.objects[key]["metadata"]["resourceVersion"] = fake.next_version()
        return original(call, key, api_version, kind)

    fake.server_side_apply = interfere
    driver.apply(spec("2"))
    deployment_patches = [c for c in fake.calls if c.method == "PATCH"
                          and c.path.endswith("/deployments/iris")]
    assert len(deployment_patches) == 3  # v1, v2 refused with 409, v2 again
    assert fake.objects[("Deployment", "trainship", "iris")]["metadata"]["annotations"][
        "trainship.io/model-version"] == "2"


def test_autoscaler_and_budget_are_pruned_when_no_longer_wanted(kube) -> None:
    fake, driver = kube
    driver.apply(spec("1", replicas=2, max_replicas=4))
    assert ("HorizontalPodAutoscaler", "trainship", "iris") in fake.objects
    assert "replicas" not in fake.objects[("Deployment", "trainship", "iris")]["spec"]
    driver.apply(spec("2"))
    assert ("HorizontalPodAutoscaler", "trainship", "iris") not in fake.objects
    assert ("PodDisruptionBudget", "trainship", "iris") not in fake.objects


def test_refused_apply_is_a_rollout_failed_naming_why(kube) -> None:
    fake, driver = kube
    fake.namespaces_forbidden = True  # may not read namespaces, and "models" does not exist
    configure(driver, namespace="models")
    with pytest.raises(RolloutFailed) as raised:
        driver.apply(spec("1"))
    error = raised.value
    assert error.step == "DeployModel" and "404" in error.message
    assert "'models'" in error.message and 'namespaces \\"models\\" not found' in error.details
    assert "kubectl create namespace" in error.help
    assert not fake.objects
    fake.namespaces.add("models")  # created by an admin: now the same identity applies
    assert driver.apply(spec("1")).handle["namespace"] == "models"


def test_rejected_service_undoes_the_deployment(kube) -> None:
    fake, driver = kube
    driver.apply(spec("1"))
    fake.reject_kind = "Service"
    with pytest.raises(RolloutFailed) as raised:
        driver.apply(spec("2"))
    assert "422" in raised.value.message and "nodePort" in raised.value.details
    deployment = fake.objects[("Deployment", "trainship", "iris")]  # back on version 1
    assert deployment["metadata"]["annotations"]["trainship.io/model-version"] == "1"
    fake.objects.clear()
    with pytest.raises(RolloutFailed):  # a first deployment leaves nothing behind
        driver.apply(spec("1"))
    assert not fake.objects


def test_a_rollback_replaces_the_higher_live_version_and_is_undone_to_it(kube) -> None:
    from dataclasses import replace

    fake, driver = kube
    driver.apply(spec("3"))
    handle = driver.apply(replace(spec("1"), replace_higher=True)).handle
    assert "superseded_by" not in handle and handle["previous"]["version"] == "3"
    assert not handle["previous"]["replace_higher"]  # the undo is a plain re-apply of v3
    deployment = fake.objects[("Deployment", "trainship", "iris")]
    assert deployment["metadata"]["annotations"]["trainship.io/model-version"] == "1"
    assert driver.promote(handle, replace_higher=True) is None  # v1 is live
    assert driver.promote(handle) is None  # nothing higher was applied since
    # the rollback failed (rollout, smoke test): RecordFailure puts v3 back, same Service
    driver.discard(handle)
    deployment = fake.objects[("Deployment", "trainship", "iris")]
    assert deployment["metadata"]["annotations"]["trainship.io/model-version"] == "3"
    assert ("Service", "trainship", "iris") in fake.objects
