"""A model's auth file: which tokens ``POST /invocations`` accepts (plain logic, no I/O).

It lives in the inference service because the image ships this package alone; the
deployment side (trainship.auth) re-exports it and adds what issues and changes tokens.

One entry per line, ``#`` starts a comment:

- ``none``: the URL is open (no other entries);
- ``token <sha256hex>``: the model's delivered token;
- ``pending <sha256hex>``: a token generated but not yet delivered (it authenticates too);
- ``smoke <sha256hex> <expires_unix>``: a deployment's smoke-test token, valid until then.

Only digests are stored: the file (a Kubernetes Secret on EKS) never holds a token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["token", "pending", "smoke"]
KINDS: tuple[Kind, ...] = ("token", "pending", "smoke")
_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Entry:
    kind: Kind
    digest: str  # sha256 hex of the token
    expires: float | None = None  # unix time; smoke entries only


@dataclass(frozen=True, slots=True)
class AuthFile:
    open: bool = False
    entries: tuple[Entry, ...] = ()


def digest(token: str) -> str:
    """The sha256 hex digest of a token: what the auth file stores."""
    return hashlib.sha256(token.encode()).hexdigest()


def _entry(number: int, fields: list[str]) -> Entry:
    kind, rest = fields[0], fields[1:]
    if kind not in KINDS:
        raise ValueError(f"line {number}: unknown entry {kind!r} (known: none, "
                         f"{', '.join(KINDS)})")
    expected = 2 if kind == "smoke" else 1
    if len(rest) != expected:
        raise ValueError(f"line {number}: {kind} takes {expected} field(s), got {len(rest)}")
    if not _HEX.fullmatch(rest[0]):
        raise ValueError(f"line {number}: {kind}: not a sha256 hex digest")
    expires = None
    if kind == "smoke":
        try:
            expires = float(rest[1])
        except ValueError:
            raise ValueError(f"line {number}: smoke: expiry {rest[1]!r} is not a "
                             "unix time") from None
    return Entry(kind, rest[0], expires)


def parse(text: str) -> AuthFile:
    """An auth file's text; ValueError on anything else (the service then fails closed).
    A file without entries is valid and lets nobody in."""
    is_open = False
    entries: list[Entry] = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if fields == ["none"]:
            is_open = True
        else:
            entries.append(_entry(number, fields))
    if is_open and entries:
        raise ValueError("'none' (an open URL) cannot be combined with token entries")
    return AuthFile(open=is_open, entries=tuple(entries))


def render(auth: AuthFile) -> str:
    """The text ``parse`` reads back as ``auth``."""
    if auth.open:
        return "none\n"
    lines = []
    for entry in auth.entries:
        if entry.kind == "smoke":
            lines.append(f"smoke {entry.digest} {int(entry.expires or 0)}")
        else:
            lines.append(f"{entry.kind} {entry.digest}")
    return "".join(line + "\n" for line in lines)


def allows(auth: AuthFile, token: str | None, now: float) -> bool:
    """Whether a request with ``token`` (None: none sent) may call /invocations. Every
    entry is compared (hmac.compare_digest on digests) so the time does not tell which."""
    if auth.open:
        return True
    if not token:
        return False
    sent = digest(token)
    allowed = False
    for entry in auth.entries:
        match = hmac.compare_digest(sent, entry.digest)
        live = entry.expires is None or now < entry.expires
        allowed |= match and live
    return allowed
