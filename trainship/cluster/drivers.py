"""Picks the cluster driver of a deployment's target: the one place that imports the drivers,
and the one place that reads their settings (trainship.config.ClusterSettings)."""

from __future__ import annotations

from trainship.cluster import ClusterDriver
from trainship.cluster.podman import PodmanDriver
from trainship.cluster.process import ProcessDriver
from trainship.config import ClusterSettings, Settings

DRIVERS = ("process", "podman", "kubernetes")


def driver_from_settings(settings: Settings, target: str = "",
                         cluster: ClusterSettings | None = None) -> ClusterDriver:
    """The driver of a deployment's target (the stack's default when it names none), with
    ``cluster`` (default: read from the environment now)."""
    name = settings.driver_name(target)
    if name not in DRIVERS:
        raise ValueError(f"unknown cluster driver {name!r} (known: {', '.join(DRIVERS)})")
    cluster = cluster or ClusterSettings.from_env()
    if name == "process":
        return ProcessDriver(settings.home / "serving", cluster.serving)
    if name == "podman":
        return PodmanDriver(settings.home / "podman", cluster.serving)
    # the kubernetes client library is heavy and only the kubernetes target needs it
    from trainship.cluster.kubernetes import driver_from_settings as kubernetes_driver

    return kubernetes_driver(cluster)
