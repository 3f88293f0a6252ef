"""The inference service's settings, read from its environment once, at start-up.

They live here and not in ``trainship.config`` because the image ships this package alone
(pyproject's import contract forbids ``trainship.serving`` -> ``trainship.config``), so
``flag`` repeats ``config.env_flag``'s rules; tests/unit/test_serving_settings.py checks
that the two agree. The command line's flags override these (``cli``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
_Number = TypeVar("_Number", int, float)


def flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """A boolean variable: 1/true/yes/on (any case) are true; unset, empty, 0/false/no/off
    are false; anything else is a ValueError naming the variable."""
    value = (os.environ if environ is None else environ).get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean: use 1/true/yes/on or "
                     "0/false/no/off (or leave it unset)")


def _number(env: Mapping[str, str], name: str, kind: Callable[[str], _Number],
            default: _Number) -> _Number:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None


@dataclass(frozen=True)
class ServingSettings:
    """``python -m trainship.serving``'s environment (docs/environment.md)."""

    workers: int = 0  # TRAINSHIP_SERVING_WORKERS; 0: one per core
    max_batch_rows: int = 256  # TRAINSHIP_MAX_BATCH_ROWS; 1 turns batching off
    max_wait_ms: float = 2.0  # TRAINSHIP_MAX_WAIT_MS
    load_cache: Path | None = None  # TRAINSHIP_LOAD_CACHE
    keep_warning_filters: bool = False  # TRAINSHIP_KEEP_WARNING_FILTERS
    debug: bool = False  # TRAINSHIP_SERVING_DEBUG: error documents carry the traceback
    # TRAINSHIP_SERVING_AUTH_FILE: who may call /invocations (trainship.serving.guard); unset:
    # anyone (a model deployed before token auth)
    auth_file: Path | None = None
    # what is served, as the Kubernetes and podman drivers set them in the container
    model_name: str = ""  # TRAINSHIP_MODEL_NAME
    model_version: str = ""  # TRAINSHIP_MODEL_VERSION

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingSettings:
        env = os.environ if environ is None else environ
        load_cache = env.get("TRAINSHIP_LOAD_CACHE", "")
        auth_file = env.get("TRAINSHIP_SERVING_AUTH_FILE", "").strip()
        return cls(
            workers=_number(env, "TRAINSHIP_SERVING_WORKERS", int, 0),
            max_batch_rows=_number(env, "TRAINSHIP_MAX_BATCH_ROWS", int, 256),
            max_wait_ms=_number(env, "TRAINSHIP_MAX_WAIT_MS", float, 2.0),
            load_cache=Path(load_cache) if load_cache else None,
            keep_warning_filters=flag("TRAINSHIP_KEEP_WARNING_FILTERS", env),
            debug=flag("TRAINSHIP_SERVING_DEBUG", env),
            auth_file=Path(auth_file) if auth_file else None,
            model_name=env.get("TRAINSHIP_MODEL_NAME", ""),
            model_version=env.get("TRAINSHIP_MODEL_VERSION", ""),
        )

    def model_info(self) -> dict[str, str]:
        """The labels of ``trainship_model_info`` (empty when no model name is set)."""
        if not self.model_name:
            return {}
        return {"model_name": self.model_name, "model_version": self.model_version}
