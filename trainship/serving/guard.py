"""Who may call ``POST /invocations`` (and, with token auth, ``GET /openapi.json``,
``/docs``, ``/metadata``: trainship.serving.http): the model's auth file
(``--auth-file``, TRAINSHIP_SERVING_AUTH_FILE), read again only when it changed.

A request's cost is a clock read, a sha256 of the token sent and a comparison per entry:
the file is looked at (one ``stat``) at most every ``CHECK_SECONDS``, and read and parsed
only when its inode, size or mtime changed. It changes under the running server: the local
drivers replace it by a rename, the kubelet swaps a Secret volume's ``..data`` symlink
(``stat`` follows the link, so a new inode shows either way). A file that is missing,
unreadable or not an auth file lets nobody in (fail closed: 503, the server's fault) until
it is fixed.

Tokens come as ``Authorization: Bearer <token>`` (RFC 6750) or ``X-Trainship-Token``: the
Kubernetes API server's pod proxy, which the smoke test goes through, drops
``Authorization`` after authenticating its own caller (see trainship.cluster.kubernetes).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from trainship.serving.auth_file import AuthFile, allows, parse

CHECK_SECONDS = 0.5
TOKEN_HEADER = "X-Trainship-Token"  # noqa: S105 - a header name, not a secret


class Refusal(Enum):
    MISSING = "missing"  # no token sent
    INVALID = "invalid"  # a token sent, not one of the file's
    UNAVAILABLE = "unavailable"  # the auth file cannot be read: nobody gets in


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme in any case)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Guard:
    """The auth file at ``path``, kept parsed; ``check`` answers per request."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock, self._now = clock, now
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._key: tuple[int, int, int, int] | None = None
        self._auth: AuthFile | None = None  # None: unavailable
        self.problem = ""  # why the file is unavailable (logged once per change)

    def _refresh(self) -> None:
        with self._lock:
            if self._clock() - self._checked < CHECK_SECONDS:
                return  # another thread just did
            try:
                info = os.stat(self.path)
                key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
                if key != self._key:
                    self._auth, self._key, self.problem = parse(self.path.read_text()), key, ""
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                if problem != self.problem:
                    print(f"auth file {self.path} unavailable, every /invocations is refused: "
                          f"{problem}", file=sys.stderr, flush=True)
                self._auth, self._key, self.problem = None, None, problem
            self._checked = self._clock()

    def current(self) -> AuthFile | None:
        """The auth file as of at most CHECK_SECONDS ago; None when it cannot be read."""
        if self._clock() - self._checked >= CHECK_SECONDS:
            self._refresh()
        return self._auth

    def check(self, authorization: str | None, token_header: str | None) -> Refusal | None:
        """None when the request may go on, else why not."""
        auth = self.current()
        if auth is None:
            return Refusal.UNAVAILABLE
        if auth.open:
            return None
        sent = [t for t in (bearer(authorization), (token_header or "").strip()) if t]
        if not sent:
            return Refusal.MISSING
        now = self._now()
        return None if any(allows(auth, token, now) for token in sent) else Refusal.INVALID
