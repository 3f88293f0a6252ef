"""The model's auth through a deployment: what DeployModel writes, what the smoke test
sends, what PromoteModel delivers, what RecordFailure takes back and what a rotation issues.

Auth is per model (its one URL), not per version: one auth file (trainship.auth's format)
that the cluster driver keeps beside the model (a file locally, a Secret on Kubernetes) and
every serving process or pod of the model reads. The policy (docs/api.md, "auth"):

- ``auth`` omitted: a model that has an auth file keeps its auth; a new one (or one deployed
  before trainship had auth) gets the stack's default (``Settings.default_auth``).
- ``token``: a model without a delivered token gets a new one, ``pending`` until
  PromoteModel marks it delivered and the result carries it, once; a model that has one
  keeps it (its clients keep working).
- ``none``: the URL answers anyone.
- a rollback keeps the model's current auth; a model without an auth file (deployed before
  trainship had auth) is open, so its rollback writes ``none``.

Every change is a read-modify-write through ``ClusterDriver.update_auth`` (under a file lock
locally, a compare-and-swap on the Secret's resourceVersion on Kubernetes), and each
deployment adds and removes only its own entries, so concurrent deployments of one model
do not undo each other:

- DeployModel adds this deployment's pending token (if it issues one) and a smoke-test token
  that expires after the rollout deadline: the smoke test sends it (``X-Trainship-Token``:
  the API server's pod proxy drops the Authorization header). Turning token auth on for an
  open URL (``none`` -> ``token``) leaves the file ``none`` until PromoteModel, so the live
  version's clients are not cut off before the new version serves; turning it off for a
  guarded one (``token`` -> ``none``) keeps the tokens (and adds a smoke token) until
  PromoteModel opens it, so a failed deployment never leaves the URL open.
- PromoteModel removes its smoke token and delivers its pending token, unless the model
  has a delivered token by then (another deployment or a rotation came first): that token
  stands and this deployment's pending one goes.
- RecordFailure removes this deployment's pending and smoke entries (never a delivered
  token: it may be this deployment's own, delivered before a later step failed); a model
  whose URL was open is open again if no token is left. A model that had no file keeps a
  closed one without tokens, which the next deployment decides on like a new model (the
  stack's default), never as open. A failed deployment that opened the URL (``none``) puts
  the file back if it is still open.
- PromoteModel may run again after its write (a retry, a redrive): finding its own token
  delivered, it changes nothing and reports it again.
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


def _parsed(text: str | None) -> auth.AuthFile | None:
    return auth.parse(text) if text is not None else None


def decide(requested: str | None, existing: auth.AuthFile | None, default: str, *,
           rollback: bool = False) -> Mode:
    """The mode a deployment serves with: asked for, else the model's own, else (a new
    model) the stack's default; a rollback keeps what serves (no file: open)."""
    if requested in ("token", "none") and not rollback:
        return "token" if requested == "token" else "none"
    if existing is not None and (existing.open or auth.has_token(existing)):
        return "none" if existing.open else "token"
    # no file, or a closed one without a token (a new model's failed first deployment
    # left only that): the model has no auth of its own yet
    if rollback:
        return "none"  # the versions it has served did so openly (before trainship had auth)
    return "token" if default == "token" else "none"


def prepare(driver: ClusterDriver, model_name: str, *, requested: str | None, default: str,
            deadline: float, rollback: bool = False, now: float | None = None) -> AuthState:
    """DeployModel, before every apply (a rollback's too): decide, then write the auth file
    (always: on Kubernetes the pods mount the Secret, which must exist)."""
    now = time.time() if now is None else now
    # the tokens first: the change below may run again (a compare-and-swap retry)
    issued, smoke = auth.new_token(), auth.new_token()
    result: dict[str, AuthState] = {}

    def change(text: str | None) -> str:
        existing = _parsed(text)
        mode = decide(requested, existing, default, rollback=rollback)
        if mode == "none" and existing is not None and not existing.open and \
                auth.has_token(existing):  # token -> none: at PromoteModel, like none -> token
            result["state"] = AuthState(mode="none", smoke_token=smoke, previous=text,
                                        deactivate=True)
            return auth.render(auth.with_smoke(existing, auth.digest(smoke),
                                               deadline + SMOKE_GRACE_SECONDS, now))
        if mode == "none":
            result["state"] = AuthState(mode="none", previous=text)
            return auth.render(auth.open_file())
        if existing is not None and existing.open:  # none -> token: at PromoteModel
            result["state"] = AuthState(mode="token", inference_token=issued,
                                        previous=text, activate=True)
            return text or auth.render(auth.open_file())
        base = existing or auth.AuthFile(open=False, entries=())
        mine = "" if auth.delivered(base) else issued
        if mine:
            base = auth.with_pending(base, auth.digest(mine))
        base = auth.with_smoke(base, auth.digest(smoke), deadline + SMOKE_GRACE_SECONDS, now)
        result["state"] = AuthState(mode="token", smoke_token=smoke, inference_token=mine,
                                    previous=text)
        return auth.render(base)

    driver.update_auth(model_name, change)
    return result["state"]


def smoke_headers(state: AuthState | None) -> dict[str, str] | None:
    """What the smoke test sends with the input example."""
    if state is None or not state.smoke_token or (state.mode != "token" and
                                                  not state.deactivate):
        return None
    return {SMOKE_HEADER: state.smoke_token}


def guarded(driver: ClusterDriver, model_name: str, state: AuthState | None) -> bool:
    """Whether the smoke test must see /invocations refuse a request without a token: this
    deployment is in token mode with a smoke token and the file still guards the URL (an
    open URL, ``none`` -> ``token`` until PromoteModel, answers anyone)."""
    if smoke_headers(state) is None or (state is not None and state.deactivate):
        return False  # a version that will serve openly need not refuse anyone
    found = current(driver, model_name)
    return found is not None and not found.open


def deliver(driver: ClusterDriver, model_name: str, state: AuthState | None
            ) -> tuple[Mode | None, str | None]:
    """PromoteModel: this deployment's smoke token goes; its pending token becomes the
    model's token unless the model has a delivered one by then (which stands: this one
    goes). Returns the result's ``auth`` and ``inference_token`` (None unless this
    deployment's token became the model's)."""
    if state is None:
        return None, None
    if state.mode == "none" and state.deactivate:
        # token -> none: the URL opens now that this version is the one that serves
        driver.update_auth(model_name, lambda text: auth.render(auth.open_file()))
        return "none", None
    if state.mode == "none":
        return "none", None
    delivered: dict[str, str | None] = {"token": None}

    def change(text: str | None) -> str | None:
        delivered["token"] = None
        found = _parsed(text)
        if found is None:  # removed meanwhile (a delete): nothing to deliver
            return None
        if found.open and not state.activate:  # opened by a later deployment: it stands
            return None
        updated = found
        if state.smoke_token:
            updated = auth.without(updated, auth.digest(state.smoke_token))
        if state.inference_token:
            issued = auth.digest(state.inference_token)
            if any(e.kind == "token" and e.digest == issued for e in updated.entries):
                # delivered already: PromoteModel runs again (a retry, a redrive, a lost
                # answer to the write): the same token, nothing taken away
                delivered["token"] = state.inference_token
            elif auth.delivered(updated):
                updated = auth.without(updated, issued)
            elif state.activate or any(e.digest == issued for e in updated.entries):
                updated = auth.with_token(updated, issued, pending=False)
                # other deployments' pending tokens go with_token's way: theirs is not
                # delivered, and their own deliver finds this one standing
                delivered["token"] = state.inference_token
        return auth.render(updated) if updated != found else None

    final = _parsed(driver.update_auth(model_name, change))
    if final is None:
        return None, None
    return ("none" if final.open else "token"), delivered["token"]


def restore(driver: ClusterDriver, model_name: str, state: AuthState | None) -> None:
    """RecordFailure (and a failed apply): take this deployment's own entries back out."""
    if state is None:
        return
    before = _parsed(state.previous)
    was_open = before is not None and before.open
    mine = {auth.digest(t) for t in (state.smoke_token, state.inference_token) if t}

    def change(text: str | None) -> str | None:
        found = _parsed(text)
        if found is None:
            return None
        if state.deactivate:  # the file kept its tokens: only its smoke entry goes
            kept = auth.AuthFile(open=found.open, entries=tuple(
                e for e in found.entries if not (e.digest in mine and e.kind == "smoke")))
            return auth.render(kept) if kept != found else None
        if state.mode == "none":  # it opened the URL: closed again if nobody changed it
            if not found.open or was_open:
                return None
            # a model without a file before gets a closed one without tokens: the next
            # deployment decides as for a new model (the stack's default), never "open"
            return state.previous or auth.render(auth.AuthFile(open=False, entries=()))
        # its own pending and smoke entries go; a delivered token never does (it may be
        # this deployment's, delivered before a later step failed: its user has it)
        updated = auth.AuthFile(open=found.open, entries=tuple(
            e for e in found.entries if not (e.digest in mine and e.kind != "token")))
        if was_open and not updated.open and not auth.has_token(updated):
            updated = auth.open_file()  # an open URL it was turning on stays open
        return auth.render(updated) if updated != found else None

    driver.update_auth(model_name, change)


def rotate(driver: ClusterDriver, model_name: str) -> str | None:
    """A new delivered token replacing the model's token and pending tokens (smoke entries
    stay); None when the model's URL is open or it has no auth file (nothing to rotate)."""
    token = auth.new_token()
    rotated: dict[str, bool] = {}

    def change(text: str | None) -> str | None:
        found = _parsed(text)
        rotated["done"] = found is not None and not found.open
        if found is None or found.open:
            return None
        return auth.render(auth.with_token(found, auth.digest(token), pending=False))

    driver.update_auth(model_name, change)
    return token if rotated.get("done") else None
