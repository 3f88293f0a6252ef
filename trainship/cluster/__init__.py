"""Cluster drivers behind one interface.

DeployModel, CheckRollout, SmokeTestModel, PromoteModel and RecordFailure call a driver chosen by
configuration (``TRAINSHIP_CLUSTER``, picked by trainship.cluster.drivers); the handlers never
know which one runs. This module holds what every driver shares; the drivers import it.
``process`` (the local default) serves the image bundle as a local process; ``podman``
plays the very Deployment manifest with ``podman kube play``; ``kubernetes`` applies it to
a cluster (any kubeconfig, or EKS).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from trainship.cluster.handles import LocalRecord
from trainship.cluster.manifests import AUTH_FILE_ENV, WorkloadSpec
from trainship.state import Handle

__all__ = ["AUTH_FILE_ENV", "Answer", "Applied", "ClusterDriver", "RolloutStatus", "Unreachable",
           "get_text", "live_by_records", "post_json", "promote_by_records", "scrape_records",
           "traffic_by_records"]


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
    # the driver's own kind (trainship.cluster.handles); the state carries it as JSON
    handle: Handle
    # where the smoke test reaches the new version before it is live (default: the URL)
    test_url: str = ""
    # the version that served the model when this one was applied ("": none, a first
    # deployment or every earlier version gone): what a canary shares the traffic with
    live_version: str = ""


@dataclass
class Answer:
    """What the new version answered to a request (any HTTP status)."""

    status: int
    body: str


class Unreachable(Exception):
    """The new version could not be asked this time (connection refused, a proxy's 502/503,
    no ready pod yet): worth trying again until the rollout deadline."""


class ClusterDriver(Protocol):
    def apply(self, spec: WorkloadSpec) -> Applied:
        """Start serving ``spec``'s version beside what serves (``Applied.live_version``
        names that). With ``spec.canary`` and a live version of another number, the new one
        takes no share of the model's URL until ``set_traffic`` gives it one (Kubernetes:
        see trainship.cluster.kube_traffic for the one pod that does)."""

    def status(self, handle: Handle) -> RolloutStatus: ...

    def invoke(self, handle: Handle, path: str, payload: Any, *, timeout: float,
               headers: dict[str, str] | None = None) -> Answer | None:
        """POST ``payload`` as JSON to ``path`` of the version in ``handle`` itself (not the
        model's public URL, which may not resolve yet), with ``headers`` too (the smoke
        test's ``X-Trainship-Token``): the smoke test. None when that version is not served
        (a higher one replaced it). Raises Unreachable when the request did not reach the
        model and is worth retrying."""

    def read_auth(self, model_name: str) -> str | None:
        """The model's auth file text (trainship.auth), None when it has none."""

    def write_auth(self, model_name: str, text: str) -> None:
        """Create or replace the model's auth file, which every version of the model reads
        (env ``TRAINSHIP_SERVING_AUTH_FILE``): a file the local drivers replace by a rename,
        the Secret ``<serving name>-auth`` on Kubernetes. A blind write: the pipeline's steps
        change the file only through ``update_auth``; this one sets it up by hand (tests,
        an operator restoring a file)."""

    def update_auth(self, model_name: str,
                    change: Callable[[str | None], str | None]) -> str | None:
        """Read-modify-write of the model's auth file: ``change`` gets its text (None: it
        has none) and returns the new text (None: leave it). Concurrent updates do not lose
        each other's changes: the local drivers hold a lock on the file for the whole
        update; Kubernetes writes the Secret with its resourceVersion (or creates it) and
        calls ``change`` again on a 409 Conflict, a few times, then raises TransientError
        (the state machine retries the step). ``change`` may run more than once: it must
        not have side effects. Returns the text the file holds afterwards."""

    def lock(self, model_name: str) -> AbstractContextManager[None]:
        """Serialise promotions of one model (concurrent deployments of the same model)."""

    def promote(self, handle: Handle, *, replace_higher: bool = False) -> str | None:
        """Make the new version live and retire lower versions. If a higher version is
        already live, the new one is discarded instead: return that version. A rollback
        (``replace_higher``) makes it live all the same and retires every other version."""

    def set_traffic(self, handle: Handle, percent: int) -> int:
        """Share the model's traffic (a canary step): the new version in ``handle`` gets
        ``percent`` of it, the live version the rest; 100 sends everything to the new one,
        0 everything to the live one. Returns the share the new version effectively gets,
        in percent: locally (process, podman) exactly ``percent``, the front splitting per
        request by weight; on Kubernetes the share of the ready pods it scaled the two
        Deployments to (trainship.cluster.kube_traffic), which can only be coarse. It moves
        traffic only: ``promote`` still makes the new version live and retires the old one,
        ``discard`` removes it (and its share). ``percent`` outside 0..100, or 1..99 without
        a live version to share with, is a ValueError. The caller holds
        ``lock(model_name)``."""

    def scrape(self, model_name: str) -> dict[str, dict[str, str]]:
        """The model's versions now running (the version without its ``v``) -> each of
        their serving processes (pods on Kubernetes) by a key of its own (the pod's name,
        the local process's id, the local pod's name) -> its Prometheus text from /metrics,
        to judge a canary by. A key names one process for as long as it runs, so that its
        counters can be compared between two scrapes. A process or pod that does not answer
        is left out (an empty dict when none of a version did)."""

    def discard(self, handle: Handle) -> None:
        """The new version failed: remove it, leaving the previous one serving. During a
        canary (``WorkloadSpec.canary``) its share of the traffic goes back to the live
        version, which then takes all of it."""

    def remove(self, model_name: str) -> list[str]:
        """Take every version of the model out of service (a delete; the caller holds
        ``lock(model_name)``) and remove its auth file: what was removed, in words;
        nothing when nothing served."""


def post_json(url: str, payload: Any, *, timeout: float,
              headers: dict[str, str] | None = None) -> Answer:
    """POST JSON over plain HTTP (the local drivers' test URLs): an HTTP error status is the
    model's answer; a refused or dropped connection is Unreachable."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read().decode(errors="replace"))
    except (urllib.error.URLError, OSError) as exc:
        raise Unreachable(f"{url}: {exc}") from exc


R = TypeVar("R", bound=LocalRecord)


def promote_by_records(handle: R, records: list[R], *, go_live: Callable[[R], None],
                       retire: Callable[[R], None], discard: Callable[[R], None],
                       replace_higher: bool = False) -> str | None:
    """The local drivers' promotion over their records of one model: if a higher version
    already serves, discard this one and return that version; else make this one live,
    then retire the lower versions that serve. Lower versions still rolling out are left
    alone: their own promotion finds this one live (they end superseded, not failed).
    A rollback (``replace_higher``) goes live whatever serves and retires the higher
    versions that serve too."""
    mine = int(handle["version"])
    higher = [int(r["version"]) for r in records
              if r["state"] == "serving" and int(r["version"]) > mine]
    if higher and not replace_higher:
        discard(handle)
        return str(max(higher))
    go_live(handle)
    for record in records:
        if record["state"] != "serving" or int(record["version"]) == mine:
            continue
        if int(record["version"]) < mine or replace_higher:
            retire(record)
    return None


def traffic_by_records(handle: R, records: list[R], percent: int, *,
                       share: Callable[[list[tuple[int, int]]], None],
                       current: Callable[[], tuple[tuple[int, int], ...]]) -> int:
    """The local drivers' ``set_traffic`` over their records of one model: the new version's
    port gets ``percent`` as its weight, the live version's (the highest other version that
    serves) ``100 - percent``, written through ``share`` (trainship.cluster.front). With no
    other version serving, 100 points at the new one, 0 takes the new one out of whatever
    the front holds (``current``), and anything between is a ValueError: there is nothing to
    share with. Returns ``percent``: the front splits by weight, request by request, so the
    share is the one asked for."""
    if not 0 <= percent <= 100:
        raise ValueError(f"a share of traffic is a percentage from 0 to 100, not {percent}")
    mine = handle["version"]
    live = max((r for r in records if r["state"] == "serving" and r["version"] != mine),
               key=lambda r: int(r["version"]) if r["version"].isdigit() else -1, default=None)
    if live is not None:
        share([(live["port"], 100 - percent), (handle["port"], percent)])
    elif percent == 100:
        share([(handle["port"], 100)])
    elif percent == 0:
        share([t for t in current() if t[0] != handle["port"]])
    else:
        raise ValueError(f"no other version of {handle['model_name']} serves: "
                         f"v{mine} cannot take {percent}% of its traffic")
    return percent


def get_text(url: str, *, timeout: float = 5.0) -> str | None:
    """GET ``url``'s body as text (a version's /metrics), None when it does not answer 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode(errors="replace") if response.status == 200 \
                else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def scrape_records(records: list[R], key: Callable[[R], str]) -> dict[str, dict[str, str]]:
    """The local drivers' ``scrape``: each version's /metrics on its own port (one serving
    process, or pod, per version, named by ``key``; its forked workers share their counters
    through prometheus_client's multiprocess mode, trainship.serving.metrics)."""
    found: dict[str, dict[str, str]] = {}
    for record in records:
        text = get_text(f"{record['test_url']}/metrics")
        texts = found.setdefault(record["version"], {})
        if text is not None:
            texts[key(record)] = text
    return found


def live_by_records(version: str, records: list[R]) -> str:
    """The local drivers' ``Applied.live_version``: the highest version among ``records``
    that serves, other than ``version`` ("" when none does)."""
    serving = [r["version"] for r in records if r["state"] == "serving" and r["version"] != version]
    return max(serving, key=lambda v: (v.isdigit(), int(v) if v.isdigit() else 0, v),
               default="")
