from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trainship.serving.batching import Batcher, batch_key, split


def slow_double(df: pd.DataFrame) -> np.ndarray:
    time.sleep(0.01)  # a predict call costs about the same for 1 row or many
    if (df["x"] < 0).any():
        raise ValueError("negative input")
    return (df["x"] * 2).to_numpy()


def test_each_concurrent_caller_gets_exactly_its_rows() -> None:
    batches: list[tuple[int, int]] = []
    lock = threading.Lock()

    def record(requests: int, rows: int) -> None:
        with lock:
            batches.append((requests, rows))

    batcher = Batcher(slow_double, max_rows=64, on_batch=record)

    def call(i: int) -> tuple[int, Any]:
        rows = (i % 3) + 1
        frame = pd.DataFrame({"x": [i * 10 + r for r in range(rows)]})
        return i, batcher.predict(frame)

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(call, range(120)))
    for i, predictions in results:
        rows = (i % 3) + 1
        assert list(predictions) == [2 * (i * 10 + r) for r in range(rows)]
    assert sum(r for _, r in batches) == sum((i % 3) + 1 for i in range(120))
    assert max(n for n, _ in batches) > 1, "concurrent requests never shared a batch"
    assert all(r <= 64 for _, r in batches)


def test_a_bad_input_fails_alone() -> None:
    batcher = Batcher(slow_double)
    frames = [pd.DataFrame({"x": [v]}) for v in (1, 2, -3, 4, 5, 6)]

    def call(frame: pd.DataFrame) -> Any:
        try:
            return list(batcher.predict(frame))
        except ValueError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(call, frames))
    assert results == [[2], [4], "negative input", [8], [10], [12]]


def test_incompatible_inputs_are_not_mixed() -> None:
    seen: list[list[str]] = []

    def predict(df: pd.DataFrame) -> np.ndarray:
        seen.append(list(df.columns))
        time.sleep(0.005)
        return np.zeros(len(df))

    batcher = Batcher(predict)
    frames = [pd.DataFrame({"a": [1.0]}), pd.DataFrame({"b": [1.0]})] * 10
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(batcher.predict, frames))
    assert all(cols in (["a"], ["b"]) for cols in seen)


def test_unbatchable_inputs_go_straight_through() -> None:
    assert batch_key({"a": 1}) is None
    assert batch_key(pd.DataFrame()) is None
    assert batch_key(np.array([[1, 2]])) == ("array", (2,), np.array([[1, 2]]).dtype.str)
    batcher = Batcher(lambda data: ["direct", data])
    assert batcher.predict({"a": 1}) == ["direct", {"a": 1}]


@pytest.mark.parametrize("predictions", [np.arange(6), pd.Series(range(6)),
                                         pd.DataFrame({"p": range(6)}), list(range(6))])
def test_split_by_rows(predictions: Any) -> None:
    parts = split(predictions, [1, 2, 3])
    assert parts is not None
    assert [list(np.asarray(p).ravel()) for p in parts] == [[0], [1, 2], [3, 4, 5]]
    assert split(predictions, [1, 2]) is None
