"""The CLI's inference tokens: ``$XDG_CONFIG_HOME/trainship/tokens.json`` (default
``~/.config``), one token per inference URL, readable by its owner only (0600).

`trainship deploy` and `trainship token rotate` store the token a result carries (it is
shown once); `trainship predict` sends it. A bottom layer of the CLI: nothing from
trainship.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "trainship" / "tokens.json"


def _key(inference_url: str) -> str:
    return inference_url.rstrip("/")


def _read(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ValueError(f"{file} is not a token store (not JSON: {exc}); move it away") from None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    return tokens if isinstance(tokens, dict) else {}


def load(inference_url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The stored token of a model's URL, None when there is none."""
    entry = _read(path(environ)).get(_key(inference_url))
    token = entry.get("token") if isinstance(entry, dict) else None
    return str(token) if token else None


@contextmanager
def _locked(file: Path) -> Iterator[None]:
    """An exclusive flock on ``<store>.lock`` around a read-modify-write, so that two CLIs
    saving at once (two deployments finishing) both keep their token. A separate lock file:
    the store itself is replaced by a rename, a lock on it would lock the old inode."""
    fd = os.open(file.with_name(file.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a crash
    finally:
        os.close(fd)


def save(inference_url: str, token: str, *, model_name: str,
         environ: Mapping[str, str] | None = None) -> Path:
    """Store (replace) the token of a model's URL; the file is written whole, 0600, synced
    to disk and renamed into place in its directory (0700), under an flock (read-modify-
    write: concurrent saves keep every token). A crash leaves the old file or the new one:
    a token shown once is never lost to a half-written store."""
    file = path(environ)
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(file):
        tokens = _read(file)
        tokens[_key(inference_url)] = {"model_name": model_name, "token": token}
        fd, temp = tempfile.mkstemp(dir=file.parent, prefix=".tokens.", suffix=".json")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump({"tokens": tokens}, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, file)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _fsync_directory(file.parent)
    return file
