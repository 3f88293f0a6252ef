"""A pickle of the loaded pyfunc model, beside the key of what it was made for.

A start whose key matches unpickles it instead of running the flavor's loader (for skops
models that loader imports all of scikit-learn). The image build writes it once, in the
builder stage; the process mode on the first start.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
from pathlib import Path
from typing import Any

from mlflow.version import VERSION


def cache_key(model_dir: Path) -> str:
    """What a load cache is only valid for: this MLmodel, this interpreter and environment,
    this MLflow."""
    digest = hashlib.sha256((model_dir / "MLmodel").read_bytes())
    digest.update(f"{sys.version}|{sys.prefix}|{VERSION}".encode())
    return digest.hexdigest()


def write_load_cache(model: Any, model_dir: Path, cache: Path) -> bool:
    """Pickle the loaded model to ``cache`` (its key beside it); False when the model
    cannot be pickled (then every start loads it the normal way)."""
    try:
        payload = pickle.dumps(model, protocol=5)
    except Exception as exc:  # noqa: BLE001 - many flavors hold unpicklable handles
        print(f"no load cache: the model cannot be pickled ({type(exc).__name__}: {exc})",
              flush=True)
        return False
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.with_suffix(".key").write_text(cache_key(model_dir))
    tmp = cache.with_suffix(".tmp")
    tmp.write_bytes(payload)
    tmp.replace(cache)
    return True


def read_load_cache(model_dir: Path, cache: Path) -> Any | None:
    """The model from ``cache`` when it was made for this model, interpreter and MLflow;
    None when there is none, it was made for something else, or it does not unpickle."""
    key = cache.with_suffix(".key")
    if not (cache.exists() and key.exists()) or key.read_text() != cache_key(model_dir):
        return None
    try:
        return pickle.loads(cache.read_bytes())  # noqa: S301 - written by write_load_cache
    except Exception as exc:  # noqa: BLE001 - fall back to the normal load
        print(f"load cache unusable ({type(exc).__name__}: {exc}); loading the model",
              flush=True)
        return None
