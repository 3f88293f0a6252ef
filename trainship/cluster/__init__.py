"""Cluster drivers behind one interface.

DeployModel, CheckRollout, PromoteModel and RecordFailure call a driver chosen by
configuration (``TRAINSHIP_CLUSTER``); the handlers never know which one runs.
``process`` (the local default) serves the image bundle as a local process; ``podman``
plays the very Deployment manifest with ``podman kube play``; ``kubernetes`` applies it to
a cluster (any kubeconfig, or EKS).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from trainship.cluster.manifests import WorkloadSpec
from trainship.config import Settings


@dataclass
class RolloutStatus:
    ready: bool
    message: str
    inference_url: str = ""
    failed: bool = False
    details: str = ""


@dataclass
class Applied:
    inference_url: str
    handle: dict[str, Any] = field(default_factory=dict)
    # where the smoke test reaches the new version before it is live (default: the URL)
    test_url: str = ""


class ClusterDriver(Protocol):
    def apply(self, spec: WorkloadSpec) -> Applied: ...

    def status(self, handle: dict[str, Any]) -> RolloutStatus: ...

    def lock(self, model_name: str) -> AbstractContextManager[None]:
        """Serialise promotions of one model (concurrent deployments of the same model)."""

    def promote(self, handle: dict[str, Any]) -> str | None:
        """Make the new version live and retire lower versions. If a higher version is
        already live, the new one is discarded instead: return that version."""

    def discard(self, handle: dict[str, Any]) -> None:
        """The new version failed: remove it, leaving the previous one serving."""


def promote_by_records(handle: dict[str, Any], records: list[dict[str, Any]], *,
                       go_live: Callable[[dict[str, Any]], None],
                       retire: Callable[[dict[str, Any]], None],
                       discard: Callable[[dict[str, Any]], None]) -> str | None:
    """The local drivers' promotion over their records of one model: if a higher version
    already serves, discard this one and return that version; else make this one live,
    then retire the lower versions that serve. Lower versions still rolling out are left
    alone: their own promotion finds this one live (they end superseded, not failed)."""
    mine = int(handle["version"])
    higher = [int(r["version"]) for r in records
              if r.get("state") == "serving" and int(r["version"]) > mine]
    if higher:
        discard(handle)
        return str(max(higher))
    go_live(handle)
    for record in records:
        if int(record["version"]) < mine and record.get("state") == "serving":
            retire(record)
    return None


def driver_from_settings(settings: Settings, target: str = "") -> ClusterDriver:
    """The driver of a deployment's target (the stack's default when it names none)."""
    name = settings.driver_name(target)
    if name == "process":
        from trainship.cluster.process import ProcessDriver

        return ProcessDriver(settings.home / "serving")
    if name == "kubernetes":
        from trainship.cluster.kubernetes import driver_from_env

        return driver_from_env()
    if name == "podman":
        from trainship.cluster.podman import PodmanDriver

        return PodmanDriver(settings.home / "podman")
    raise ValueError(f"unknown cluster driver {name!r} "
                     "(known: process, podman, kubernetes)")
