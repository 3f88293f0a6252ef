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


class Flight:
    """The service's count of requests in flight, set by the test."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __call__(self) -> int:
        return self.count


def recording(calls: list[tuple[int, str]]) -> Any:
    def predict(data: np.ndarray) -> np.ndarray:
        calls.append((len(data), threading.current_thread().name))
        return data[:, 0] * 2

    return predict


def test_a_batch_waits_for_the_requests_in_flight() -> None:
    # three requests received (being parsed, or answered and coming back): the first one's
    # batch waits for the other two, then predicts once for all three
    calls: list[tuple[int, str]] = []
    batcher = Batcher(recording(calls), max_wait_ms=5000, expected=Flight(3))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = []
        for value in (1.0, 2.0, 3.0):
            futures.append(pool.submit(batcher.predict, np.array([[value]])))
            time.sleep(0.05)
        results = [list(f.result(timeout=10)) for f in futures]
    assert results == [[2.0], [4.0], [6.0]]
    assert [rows for rows, _ in calls] == [3]
    assert time.monotonic() - started < 2, "waited for the deadline, not for the requests"


def test_a_batch_waits_at_most_max_wait() -> None:
    # five in flight but only one comes to the batcher (the others: a slow upload, a GET)
    calls: list[tuple[int, str]] = []
    batcher = Batcher(recording(calls), max_wait_ms=150, expected=Flight(5))
    started = time.monotonic()
    assert list(batcher.predict(np.array([[1.0]]))) == [2.0]
    waited = time.monotonic() - started
    assert [rows for rows, _ in calls] == [1]
    assert 0.14 <= waited < 2


def test_a_request_alone_is_predicted_at_once_in_its_own_thread() -> None:
    calls: list[tuple[int, str]] = []
    batcher = Batcher(recording(calls), max_wait_ms=5000, expected=Flight(1))
    started = time.monotonic()
    assert list(batcher.predict(np.array([[1.0], [2.0]]))) == [2.0, 4.0]
    assert time.monotonic() - started < 1
    assert calls == [(2, threading.current_thread().name)]


def test_the_service_expects_requests_in_flight_and_clients_just_answered(
        tmp_path: Any) -> None:
    from types import SimpleNamespace

    from trainship.serving.service import RETURN_SECONDS, Service

    model = SimpleNamespace(metadata=SimpleNamespace(get_input_schema=lambda: None),
                            predict=lambda data: data)
    metrics: Any = SimpleNamespace(batch=lambda requests, rows: None)
    service = Service(model, tmp_path / "model", metrics)
    a, b, c = object(), object(), object()
    service.received(a)
    service.received(b)
    service.received(c)
    assert service.expected() == 3
    service.answered(a)  # its client sends the next request about a round trip later
    service.answered(b, closing=True)  # its connection closes: nothing more comes
    assert (service.in_flight, service.expected()) == (1, 2)
    service.received(a)  # a's next request: counted once
    assert service.expected() == 2
    service.answered(a)
    time.sleep(RETURN_SECONDS * 5)
    assert service.expected() == 1  # a did not come back in time: no longer expected
    service.answered(c)
    service.closed(c)
    assert (service.in_flight, service.expected()) == (0, 0)
