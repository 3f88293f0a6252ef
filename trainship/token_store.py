"""The CLI's inference tokens: ``$XDG_CONFIG_HOME/trainship/tokens.json`` (default
``~/.config``), one token per inference URL, readable by its owner only (0600).

`trainship deploy` and `trainship token rotate` store the token a result carries (it is
shown once); `trainship predict` sends it. A bottom layer of the CLI: nothing from
trainship.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
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


def save(inference_url: str, token: str, *, model_name: str,
         environ: Mapping[str, str] | None = None) -> Path:
    """Store (replace) the token of a model's URL; the file is written whole, 0600, by a
    rename in its directory (0700)."""
    file = path(environ)
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tokens = _read(file)
    tokens[_key(inference_url)] = {"model_name": model_name, "token": token}
    fd, temp = tempfile.mkstemp(dir=file.parent, prefix=".tokens.", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"tokens": tokens}, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(temp, file)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return file
