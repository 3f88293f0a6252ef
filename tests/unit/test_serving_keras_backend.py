"""The inference service sets KERAS_BACKEND from the model's keras flavor (MLflow records
the backend but does not set it when loading; Keras 3 would default to TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainship.serving.loading import set_keras_backend

MLMODEL = """flavors:
  keras:
    data: data
    keras_backend: {backend}
  python_function:
    loader_module: mlflow.keras
"""


def test_the_backend_comes_from_the_mlmodel(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    (tmp_path / "MLmodel").write_text(MLMODEL.format(backend="torch"))
    set_keras_backend(tmp_path)
    import os

    assert os.environ["KERAS_BACKEND"] == "torch"


def test_the_environment_wins_and_other_flavors_are_left_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("KERAS_BACKEND", "jax")
    (tmp_path / "MLmodel").write_text(MLMODEL.format(backend="torch"))
    set_keras_backend(tmp_path)
    assert os.environ["KERAS_BACKEND"] == "jax"
    monkeypatch.delenv("KERAS_BACKEND")
    (tmp_path / "MLmodel").write_text("flavors:\n  sklearn: {}\n")
    set_keras_backend(tmp_path)
    assert "KERAS_BACKEND" not in os.environ
