"""The serving load cache: used only when made for this model and environment, and a
stale or broken cache falls back to MLflow's loader with the same answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import save_logistic_model
from trainship.serving.cli import main
from trainship.serving.load_cache import cache_key
from trainship.serving.loading import load


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_logistic_model(tmp_path_factory.mktemp("cache") / "model")


ROWS = np.array([[0.1, -1.2, 0.3, 2.0], [1.5, 0.2, -0.7, 0.1]])


def test_cache_is_written_then_used(model_dir: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "lc" / "model.pkl"
    first = load(model_dir, cache)
    assert cache.exists() and cache.with_suffix(".key").exists()
    import mlflow.pyfunc

    def no_loader(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(mlflow.pyfunc, "load_model", no_loader)
    second = load(model_dir, cache)
    assert second is not first
    assert list(second.predict(ROWS)) == list(first.predict(ROWS))
    assert second.metadata.flavors.keys() == first.metadata.flavors.keys()


def test_stale_or_broken_cache_falls_back(model_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "model.pkl"
    reference = load(model_dir, cache)
    cache.with_suffix(".key").write_text("made for another model")
    cache.write_bytes(b"not a pickle")
    model = load(model_dir, cache)  # stale key: the pickle is not even read
    assert list(model.predict(ROWS)) == list(reference.predict(ROWS))
    assert cache.with_suffix(".key").read_text() == cache_key(model_dir)
    cache.write_bytes(b"not a pickle")
    model = load(model_dir, cache)  # right key, broken pickle: logged, reloaded
    assert list(model.predict(ROWS)) == list(reference.predict(ROWS))
    assert "load cache unusable" in capsys.readouterr().out
    assert cache.read_bytes() != b"not a pickle"  # rewritten for the next start


def test_prepare_command_writes_the_cache(model_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "prepared" / "model.pkl"
    assert main(["--model-dir", str(model_dir), "--load-cache", str(cache),
                 "--prepare-load-cache"]) == 0
    assert cache.with_suffix(".key").read_text() == cache_key(model_dir)
