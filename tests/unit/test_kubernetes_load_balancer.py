"""The model's Service and its load balancer, as the kubernetes driver applies them to the
fake Kubernetes API (tests/unit/fake_kube.py), and the cluster settings it takes them from."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from tests.unit.fake_kube import FakeKube, configure, spec
from trainship.config import ClusterSettings

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
    configure(driver, lb_scheme="internal", lb_source_ranges=("10.0.0.0/16",))
    configure(driver, arch="arm64")
    driver.apply(spec("1"))
    stored = fake.objects[("Service", "trainship", "iris")]
    assert stored["metadata"]["annotations"][SCHEME] == "internal"
    assert stored["metadata"]["annotations"][INTERNAL] == "true"
    assert stored["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/16"]
    deployment = fake.objects[("Deployment", "trainship", "iris")]
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {
        "kubernetes.io/arch": "arm64"}


def test_driver_from_settings_reads_the_cluster_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from trainship.cluster import kubernetes

    monkeypatch.setattr(kubernetes, "api_from_settings", lambda settings: None)
    monkeypatch.setenv("TRAINSHIP_LB_SCHEME", "internal")
    monkeypatch.setenv("TRAINSHIP_LB_SOURCE_RANGES", "10.0.0.0/8, 172.16.0.0/12")
    monkeypatch.setenv("TRAINSHIP_CLUSTER_ARCH", "arm64")
    driver = kubernetes.driver_from_settings(ClusterSettings.from_env())
    rendered = driver.spec(spec("1"))
    assert (rendered.lb_scheme, rendered.lb_source_ranges, rendered.arch) == (
        "internal", ["10.0.0.0/8", "172.16.0.0/12"], "arm64")
    for name in ("TRAINSHIP_LB_SCHEME", "TRAINSHIP_LB_SOURCE_RANGES", "TRAINSHIP_CLUSTER_ARCH"):
        monkeypatch.delenv(name)
    rendered = kubernetes.driver_from_settings(ClusterSettings.from_env()).spec(spec("1"))
    assert (rendered.lb_scheme, rendered.lb_source_ranges, rendered.arch) == (
        "internet-facing", [], "amd64")


CERTIFICATE = ("arn:aws:acm:eu-west-1:111122223333:certificate/"
               "12345678-1234-1234-1234-123456789012")
SSL_CERT = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"


def test_a_certificate_turns_the_url_to_https_on_443_and_back(kube) -> None:
    """trainship:certificateArn (TRAINSHIP_LB_CERTIFICATE_ARN): the applied Service has only
    port 443 with the certificate, and the inference URL is https://; without it, 80 and
    http:// again (server-side apply drops the port and annotations it owned)."""
    fake, driver = kube
    fake.load_balancer = {"ingress": [{"hostname": "a1.elb.example"}]}
    assert driver.apply(spec("1")).inference_url == "http://a1.elb.example"
    configure(driver, lb_certificate_arn=CERTIFICATE)
    assert driver.apply(spec("2")).inference_url == "https://a1.elb.example"
    stored = fake.objects[("Service", "trainship", "iris")]
    assert stored["metadata"]["annotations"][SSL_CERT] == CERTIFICATE
    assert [p["port"] for p in stored["spec"]["ports"]] == [443]
    configure(driver, lb_certificate_arn="")
    assert driver.apply(spec("3")).inference_url == "http://a1.elb.example"
    stored = fake.objects[("Service", "trainship", "iris")]
    assert SSL_CERT not in stored["metadata"]["annotations"]
    assert [p["port"] for p in stored["spec"]["ports"]] == [80]


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
    configure(driver, lb_scheme="internal")
    driver.apply(spec("3"))
    stored = fake.objects[("Service", "trainship", "iris")]
    assert stored["metadata"]["annotations"][INTERNAL] == "true"
    configure(driver, lb_scheme="internet-facing")
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
