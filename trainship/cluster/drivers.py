"""Picks the cluster driver of a deployment's target: the one place that imports the drivers."""

from __future__ import annotations

from trainship.cluster import ClusterDriver
from trainship.cluster.podman import PodmanDriver
from trainship.cluster.process import ProcessDriver
from trainship.config import Settings

DRIVERS = ("process", "podman", "kubernetes")


def driver_from_settings(settings: Settings, target: str = "") -> ClusterDriver:
    """The driver of a deployment's target (the stack's default when it names none)."""
    name = settings.driver_name(target)
    if name == "process":
        return ProcessDriver(settings.home / "serving")
    if name == "kubernetes":
        # the kubernetes client library is heavy and only the kubernetes target needs it
        from trainship.cluster.kubernetes import driver_from_env

        return driver_from_env()
    if name == "podman":
        return PodmanDriver(settings.home / "podman")
    raise ValueError(f"unknown cluster driver {name!r} (known: {', '.join(DRIVERS)})")
