"""Inference tokens of served models: issuing them and changing a model's auth file (plain
logic, no I/O; the cluster drivers store the text: ``read_auth``/``write_auth``).

The file format and the check the service makes live in trainship.serving.auth_file (the
image ships that package alone); they are re-exported here. A model's auth is per model
(its one URL), not per version:

- a deployment that turns token auth on adds the new token as ``pending`` (it works, but
  the user has not been told it yet) plus a ``smoke`` entry for its smoke test;
- its promotion marks it ``token`` (delivered) and drops the smoke entry;
- several deployments may each have a ``pending`` token at once (the file holds one line
  each); each delivers or removes only its own, and the first delivered stands.
"""

from __future__ import annotations

import secrets

from trainship.serving.auth_file import AuthFile, Entry, Kind, allows, digest, parse, render

__all__ = ["AuthFile", "Entry", "allows", "delivered", "digest", "has_token", "new_token",
           "open_file", "parse", "render", "with_pending", "with_smoke", "with_token",
           "without"]

PREFIX = "tsk_"


def new_token() -> str:
    """A new inference token (``tsk_`` and 256 random bits, URL-safe)."""
    return PREFIX + secrets.token_urlsafe(32)


def open_file() -> AuthFile:
    """The auth file of a model whose URL answers anyone."""
    return AuthFile(open=True, entries=())


def with_token(auth: AuthFile, digest: str, *, pending: bool) -> AuthFile:
    """``auth`` with ``digest`` as its one model token (``pending``: not delivered
    yet), replacing any token or pending entry and turning an open URL into a guarded one;
    smoke entries stay."""
    kind: Kind = "pending" if pending else "token"
    kept = tuple(e for e in auth.entries if e.kind == "smoke")
    return AuthFile(open=False, entries=(Entry(kind, digest), *kept))


def with_pending(auth: AuthFile, digest: str) -> AuthFile:
    """``auth`` plus ``digest`` as one more ``pending`` token (several deployments may each
    have issued one; each delivers or removes only its own), turning an open URL into a
    guarded one; the other entries stay."""
    kept = tuple(e for e in auth.entries if e.digest != digest)
    return AuthFile(open=False, entries=(*kept, Entry("pending", digest)))


def with_smoke(auth: AuthFile, digest: str, expires: float, now: float) -> AuthFile:
    """``auth`` plus a smoke-test token valid until ``expires``; expired smoke entries are
    dropped. An open URL stays open (its smoke test needs no token)."""
    if auth.open:
        return auth
    kept = tuple(e for e in auth.entries
                 if e.kind != "smoke" or (e.expires is not None and e.expires > now))
    return AuthFile(open=False, entries=(*kept, Entry("smoke", digest, expires)))


def without(auth: AuthFile, digest: str) -> AuthFile:
    """``auth`` without the entries of ``digest``."""
    return AuthFile(open=auth.open,
                    entries=tuple(e for e in auth.entries if e.digest != digest))


def delivered(auth: AuthFile) -> bool:
    """The model has a token its user was given."""
    return any(e.kind == "token" for e in auth.entries)


def has_token(auth: AuthFile) -> bool:
    """The model has a token, delivered or pending."""
    return any(e.kind in ("token", "pending") for e in auth.entries)
