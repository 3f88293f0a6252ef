"""The model's auth through a deployment: what DeployModel writes, what the smoke test
sends, what PromoteModel delivers, what RecordFailure puts back and what a rotation issues.

Auth is per model (its one URL), not per version: one auth file (trainship.auth's format)
that the cluster driver keeps beside the model (a file locally, a Secret on Kubernetes) and
every serving process or pod of the model reads. The policy (docs/api.md, "auth"):

- ``auth`` omitted: a model that has an auth file keeps its auth; a new one (or one deployed
  before trainship had auth) gets the stack's default (``Settings.default_auth``).
- ``token``: a model without a delivered token gets a new one, ``pending`` until
  PromoteModel marks it delivered and the result carries it, once; a model that has one
  keeps it (its clients keep working). A pending token (a deployment that failed) is
  replaced, since nobody ever saw it.
- ``none``: the URL answers anyone.
- a rollback keeps the model's current auth; a model without an auth file (deployed before
  trainship had auth) is open, so its rollback writes ``none``.

DeployModel also adds a smoke-test token that expires after the rollout deadline: the
smoke test sends it (``X-Trainship-Token``: the API server's pod proxy drops the
Authorization header), PromoteModel removes it. RecordFailure writes back the file as it
was before DeployModel (``AuthState.previous``), so a failed deployment changes nothing.
"""

from __future__ import annotations

import time
from typing import Literal

from trainship import auth
from trainship.cluster import ClusterDriver
from trainship.state import AuthState

SMOKE_GRACE_SECONDS = 15 * 60  # the smoke token outlives the rollout deadline by this much
SMOKE_HEADER = "X-Trainship-Token"
Mode = Literal["token", "none"]


def current(driver: ClusterDriver, model_name: str) -> auth.AuthFile | None:
    """The model's auth file, parsed; None when it has none."""
    text = driver.read_auth(model_name)
    return auth.parse(text) if text is not None else None


def decide(requested: str | None, existing: auth.AuthFile | None, default: str, *,
           rollback: bool = False) -> Mode:
    """The mode a deployment serves with: asked for, else the model's own, else (a new
    model) the stack's default; a rollback keeps what serves (no file: open)."""
    if requested in ("token", "none") and not rollback:
        return "token" if requested == "token" else "none"
    if existing is not None:
        return "none" if existing.open else "token"
    return "token" if default == "token" and not rollback else "none"


def prepare(driver: ClusterDriver, model_name: str, *, requested: str | None, default: str,
            deadline: float, rollback: bool = False, now: float | None = None) -> AuthState:
    """DeployModel, before every apply (a rollback's too): decide, then write the auth file
    (always: on Kubernetes the pods mount the Secret, which must exist)."""
    now = time.time() if now is None else now
    text = driver.read_auth(model_name)
    existing = auth.parse(text) if text is not None else None
    mode = decide(requested, existing, default, rollback=rollback)
    if mode == "none":
        driver.write_auth(model_name, auth.render(auth.open_file()))
        return AuthState(mode="none", previous=text)
    base = existing if existing is not None and not existing.open else auth.AuthFile(
        open=False, entries=())
    issued = ""
    if not auth.delivered(base):
        issued = auth.new_token()
        base = auth.with_token(base, auth.digest(issued), pending=True)
    smoke = auth.new_token()
    base = auth.with_smoke(base, auth.digest(smoke), deadline + SMOKE_GRACE_SECONDS, now)
    driver.write_auth(model_name, auth.render(base))
    return AuthState(mode="token", smoke_token=smoke, inference_token=issued, previous=text)


def smoke_headers(state: AuthState | None) -> dict[str, str] | None:
    """What the smoke test sends with the input example."""
    if state is None or state.mode != "token" or not state.smoke_token:
        return None
    return {SMOKE_HEADER: state.smoke_token}


def deliver(driver: ClusterDriver, model_name: str, state: AuthState | None
            ) -> tuple[Mode | None, str | None]:
    """PromoteModel, under the model's lock: the pending token becomes the model's token,
    the smoke token goes. Returns the result's ``auth`` and ``inference_token`` (None
    unless this deployment issued it and the file still holds it)."""
    if state is None:
        return None, None
    if state.mode == "none":
        return "none", None
    found = current(driver, model_name)
    if found is None or found.open:  # changed under us (a later deployment): report it
        return ("none" if found is not None else None), None
    updated = found
    if state.smoke_token:
        updated = auth.without(updated, auth.digest(state.smoke_token))
    token = None
    if state.inference_token:
        issued = auth.digest(state.inference_token)
        if any(entry.digest == issued for entry in found.entries):
            updated = auth.with_token(updated, issued, pending=False)
            token = state.inference_token
    if updated != found:
        driver.write_auth(model_name, auth.render(updated))
    return "token", token


def restore(driver: ClusterDriver, model_name: str, state: AuthState | None) -> None:
    """RecordFailure: the auth file as it was before DeployModel. A model that had none
    keeps the new one (its pending token is replaced by the next deployment)."""
    if state is not None and state.previous is not None:
        driver.write_auth(model_name, state.previous)


def rotate(driver: ClusterDriver, model_name: str) -> str | None:
    """A new delivered token replacing the model's token (smoke entries stay); None when
    the model's URL is open or it has no auth file (nothing to rotate)."""
    found = current(driver, model_name)
    if found is None or found.open:
        return None
    token = auth.new_token()
    driver.write_auth(model_name, auth.render(auth.with_token(found, auth.digest(token),
                                                                pending=False)))
    return token
