"""The kubernetes driver against an HTTP-level fake Kubernetes API (tests/unit/fake_kube.py).

The driver's real code runs: the kubernetes client's ApiClient speaks HTTP to the fake,
which enforces the server-side-apply contract and serves status sequences.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.helpers import state as make_state
from tests.unit.fake_kube import FakeKube, FakeKubeServer
from trainship import steps
from trainship.cluster.kube_api import KubeApi, eks_token
from trainship.cluster.kubernetes import KubernetesDriver
from trainship.cluster.manifests import WorkloadSpec
from trainship.errors import RolloutFailed
from trainship.state import RolloutState

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/trainship-models:iris-v{v}@sha256:" + \
    "ab" * 32
TOKEN = "test-token"


@pytest.fixture()
def kube() -> Iterator[tuple[FakeKube, KubernetesDriver]]:
    fake = FakeKube()
    with FakeKubeServer(fake) as server:
        configuration = k8s.Configuration()
        configuration.host = server.url
        configuration.api_key = {"authorization": f"Bearer {TOKEN}"}  # as kubeconfig sets it
        yield fake, KubernetesDriver(KubeApi(k8s.ApiClient(configuration)))


def spec(version: str, **extra: Any) -> WorkloadSpec:
    return WorkloadSpec(model_name="iris", version=version, image_uri=IMAGE.format(v=version),
                        deployment_id=f"d-{version}", **extra)


def ready_status(replicas: int = 1, generation: int = 1) -> dict[str, Any]:
    return {"observedGeneration": generation, "replicas": replicas,
            "updatedReplicas": replicas, "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [{"type": "Progressing", "status": "True",
                            "reason": "NewReplicaSetAvailable"}]}


def pod(version: str, *, waiting: str | None = None, last_terminated: str | None = None,
        unschedulable: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "model", "restartCount": 3 if waiting else 0,
                                 "state": {"waiting": {"reason": waiting,
                                                       "message": f"{waiting} details"}}
                                 if waiting else {"running": {}}}
    if last_terminated:
        container["lastState"] = {"terminated": {"reason": last_terminated, "exitCode": 137}}
    status: dict[str, Any] = {"containerStatuses": [container]}
    if unschedulable:
        status = {"conditions": [{"type": "PodScheduled", "status": "False",
                                  "reason": "Unschedulable",
                                  "message": "0/3 nodes are available: 3 Insufficient cpu."}]}
    return {"metadata": {"name": f"iris-{version}-abc",
                         "labels": {"app.kubernetes.io/instance": "iris",
                                    "app.kubernetes.io/version": f"v{version}"}},
            "status": status}


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


def test_eks_token_is_a_presigned_get_caller_identity() -> None:
    import botocore.session

    session = botocore.session.get_session()
    session.set_credentials("AKIDEXAMPLE", "secret")
    token = eks_token("prod", "eu-west-1", session=_Boto3Like(session))
    assert token.startswith("k8s-aws-v1.")
    encoded = token.removeprefix("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    assert parsed.netloc == "sts.eu-west-1.amazonaws.com"
    assert query["Action"] == ["GetCallerIdentity"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Expires"] == ["60"]
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")


def test_eks_token_outside_the_aws_partition_signs_for_that_partitions_sts() -> None:
    import botocore.session

    session = botocore.session.get_session()
    session.set_credentials("AKIDEXAMPLE", "secret")
    token = eks_token("prod", "cn-north-1", session=_Boto3Like(session))
    encoded = token.removeprefix("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    assert urlparse(url).netloc == "sts.cn-north-1.amazonaws.com.cn"


class _Boto3Like:
    """What eks_token needs of a boto3 Session, over a botocore session."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.events = session.get_component("event_emitter")

    def client(self, name: str, region_name: str) -> Any:
        return self.session.create_client(name, region_name=region_name)

    def get_credentials(self) -> Any:
        return self.session.get_credentials()


def test_refused_apply_is_a_rollout_failed_naming_why(kube) -> None:
    fake, driver = kube
    fake.namespaces_forbidden = True  # may not read namespaces, and "models" does not exist
    driver.namespace = "models"
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


# --- the Service's load balancer (issue 10, item 2) ------------------------------------

SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"
INTERNAL = "service.beta.kubernetes.io/aws-load-balancer-internal"


def service_patches(fake: FakeKube) -> list[Any]:
    return [c.body for c in fake.calls if c.method == "PATCH" and "/services/" in c.path]


def test_service_asks_for_an_internet_facing_load_balancer(kube) -> None:
    """The AWS Load Balancer Controller and EKS Auto Mode make an internal NLB unless told
    otherwise: the applied Service must say internet-facing."""
    fake, driver = kube
    driver.apply(spec("1"))
    stored = fake.objects[("Service", "trainship", "iris")]
    assert stored["metadata"]["annotations"][SCHEME] == "internet-facing"
    assert INTERNAL not in stored["metadata"]["annotations"]
    assert "loadBalancerSourceRanges" not in stored["spec"]


def test_internal_scheme_and_source_ranges_from_the_driver_settings(kube) -> None:
    fake, driver = kube
    driver.lb_scheme, driver.lb_source_ranges = "internal", ["10.0.0.0/16"]
    driver.arch = "arm64"
    driver.apply(spec("1"))
    stored = fake.objects[("Service", "trainship", "iris")]
    assert stored["metadata"]["annotations"][SCHEME] == "internal"
    assert stored["metadata"]["annotations"][INTERNAL] == "true"
    assert stored["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/16"]
    deployment = fake.objects[("Deployment", "trainship", "iris")]
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {
        "kubernetes.io/arch": "arm64"}


def test_driver_from_env_reads_the_cluster_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainship.cluster import kubernetes

    monkeypatch.setattr(kubernetes, "api_from_env", lambda: None)
    monkeypatch.setenv("TRAINSHIP_LB_SCHEME", "internal")
    monkeypatch.setenv("TRAINSHIP_LB_SOURCE_RANGES", "10.0.0.0/8, 172.16.0.0/12")
    monkeypatch.setenv("TRAINSHIP_CLUSTER_ARCH", "arm64")
    driver = kubernetes.driver_from_env()
    rendered = driver.spec(spec("1"))
    assert (rendered.lb_scheme, rendered.lb_source_ranges, rendered.arch) == (
        "internal", ["10.0.0.0/8", "172.16.0.0/12"], "arm64")
    for name in ("TRAINSHIP_LB_SCHEME", "TRAINSHIP_LB_SOURCE_RANGES", "TRAINSHIP_CLUSTER_ARCH"):
        monkeypatch.delenv(name)
    rendered = kubernetes.driver_from_env().spec(spec("1"))
    assert (rendered.lb_scheme, rendered.lb_source_ranges, rendered.arch) == (
        "internet-facing", [], "amd64")


@pytest.mark.parametrize("lb_class", ["service.k8s.aws/nlb", "eks.amazonaws.com/nlb"])
def test_reapplying_leaves_the_controllers_load_balancer_class_alone(kube, lb_class) -> None:
    """The controller's webhook sets spec.loadBalancerClass on the new Service (nobody owns
    it); it is immutable. Re-applying by server-side apply must neither send nor clear it,
    and a scheme change must still go through."""
    fake, driver = kube
    fake.load_balancer_class = lb_class
    driver.apply(spec("1"))
    assert fake.objects[("Service", "trainship", "iris")]["spec"]["loadBalancerClass"] == \
        lb_class
    driver.apply(spec("2"))
    driver.lb_scheme = "internal"
    driver.apply(spec("3"))
    stored = fake.objects[("Service", "trainship", "iris")]
    assert stored["metadata"]["annotations"][INTERNAL] == "true"
    driver.lb_scheme = "internet-facing"
    driver.apply(spec("4"))  # the internal annotation we owned is removed again
    stored = fake.objects[("Service", "trainship", "iris")]
    assert INTERNAL not in stored["metadata"]["annotations"]
    assert stored["spec"]["loadBalancerClass"] == lb_class
    assert stored["metadata"]["annotations"]["trainship.io/model-version"] == "4"
    assert all("loadBalancerClass" not in body["spec"] for body in service_patches(fake))
    driver.discard(driver.apply(spec("5")).handle)  # a rollback re-applies v4: same rule
    assert fake.objects[("Service", "trainship", "iris")]["spec"]["loadBalancerClass"] == \
        lb_class


def test_fake_refuses_to_change_the_load_balancer_class(kube) -> None:
    """What would happen if the Service named a class itself (say the controller's, on an
    Auto Mode cluster): the API server refuses, 422."""
    from trainship.cluster.manifests import service as render_service

    fake, driver = kube
    fake.load_balancer_class = "eks.amazonaws.com/nlb"
    driver.apply(spec("1"))
    mine = render_service(driver.spec(spec("2")))
    mine["spec"]["loadBalancerClass"] = "service.k8s.aws/nlb"
    with pytest.raises(ApiException) as raised:
        driver.api.apply(mine)
    assert raised.value.status == 422 and "may not change once set" in str(raised.value.body)


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


def smoke_state(tmp_path: Path, handle: dict[str, Any], url: str, deadline: float) -> Any:
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
