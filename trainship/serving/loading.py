"""Getting the model: the Keras backend it was saved with, then the load cache or MLflow's
loader."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import yaml

from trainship.serving.load_cache import read_load_cache, write_load_cache


def set_keras_backend(model_dir: Path) -> None:
    """Keras 3 picks its backend once, at import, from KERAS_BACKEND (default TensorFlow);
    MLflow records the backend the model was saved with in the MLmodel's ``keras`` flavor
    but does not set it when loading. Set it from there unless the environment says."""
    path = model_dir / "MLmodel"
    if "KERAS_BACKEND" in os.environ or not path.exists():
        return
    flavors = (yaml.safe_load(path.read_text()) or {}).get("flavors") or {}
    backend = (flavors.get("keras") or {}).get("keras_backend")
    if isinstance(backend, str) and backend:
        os.environ["KERAS_BACKEND"] = backend


def load(model_dir: Path, cache: Path | None = None) -> Any:
    """The pyfunc model: from the load cache when it was made for this model, interpreter
    and MLflow, else with ``mlflow.pyfunc.load_model`` (then the cache is (re)written when
    its directory is writable)."""
    from mlflow.pyfunc import load_model

    if cache is not None:
        model = read_load_cache(model_dir, cache)
        if model is not None:
            return model
    model = load_model(str(model_dir))
    if cache is not None:
        with contextlib.suppress(OSError):  # a read-only place: no cache, nothing else
            write_load_cache(model, model_dir, cache)
    return model


def prepare_load_cache(model_dir: Path, cache: Path) -> None:
    """The image build's step: load the model and write its cache; a model that does not
    load here is reported and left to the rollout (which shows the container's logs)."""
    from mlflow.pyfunc import load_model

    try:
        model = load_model(str(model_dir))
    except Exception as exc:  # noqa: BLE001 - the rollout reports it with the logs
        print(f"no load cache: the model does not load here ({type(exc).__name__}: "
              f"{exc})", flush=True)
        return
    write_load_cache(model, model_dir, cache)
