"""Each driver's handle on a version it applied, and the local drivers' records.

A handle travels through the state machine as JSON (``rollout.handle``; its common keys are
trainship.state.Handle), so these are TypedDicts: plain dicts on the wire, typed in the code.
A driver reads a handle back through ``read`` (pydantic validates it): a handle of another
driver, or one cut short, fails there with the missing key named instead of a KeyError
deep inside the driver.

The local drivers keep their handles as records too (``<home>/serving`` and
``<home>/podman``): a record is the handle as the driver last saved it. Each model there
has one front (trainship.cluster.front), whose record is a FrontRecord.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypeVar

from pydantic import TypeAdapter
from typing_extensions import TypedDict

from trainship.state import Handle

RecordState = Literal["starting", "serving"]


class LocalRecord(Handle):
    """A local driver's version (process, podman): where it listens and whether it is the
    live one."""

    deployment_id: str
    port: int
    url: str  # the model's URL: its front (trainship.cluster.front), the same for every version
    test_url: str  # the version's own port, where the smoke test reaches it before it is live
    state: RecordState


class ProcessHandle(LocalRecord):
    pid: int
    log: str
    requirements: list[str]
    debug: NotRequired[bool]  # started with --debug (records before it had none: false)


class PodmanHandle(LocalRecord):
    pod: str
    manifest: str
    play_error: NotRequired[str]  # podman kube play refused the manifest


class FrontRecord(TypedDict):
    """A model's front on the local stack (``service.json``): its port never changes."""

    port: int
    pid: int
    url: str


class KubernetesHandle(Handle):
    namespace: str
    spec: dict[str, Any]  # the WorkloadSpec applied (dataclasses.asdict)
    # the live version's WorkloadSpec before this apply (the rollback), None on a first one
    previous: NotRequired[dict[str, Any] | None]
    superseded_by: NotRequired[str]  # a higher version was live: nothing was applied
    # applied as a canary: the Deployment <serving name>-canary beside the live one
    # (trainship.cluster.kube_traffic), which had ``live_replicas`` replicas
    canary: NotRequired[bool]
    live_replicas: NotRequired[int]


H = TypeVar("H")


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def _adapter(kind: type[H]) -> TypeAdapter[H]:
    if kind not in _ADAPTERS:  # building one takes milliseconds: once per kind
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]


def read(kind: type[H], handle: Any) -> H:
    """``handle`` (a Handle from the state, or a record's JSON) as the driver's own kind,
    validated."""
    return _adapter(kind).validate_python(handle)


def read_json(kind: type[H], text: str) -> H:
    """A record file's text as the driver's own kind, validated."""
    return _adapter(kind).validate_json(text)
