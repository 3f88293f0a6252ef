"""Dynamic micro-batching of concurrent predictions.

Many models (tree ensembles, linear models) cost about the same for 1 row as for 100, so
concurrent requests can share one ``predict`` call. Request threads hand their parsed
input to :class:`Batcher`; one worker thread joins compatible inputs (same kind, columns
and dtypes) into a batch of at most ``max_rows`` rows, predicts once, and gives each
caller exactly its own rows' predictions.

How long a batch waits: while other requests are on their way (``expected``: in flight in
the service but not in the batcher, i.e. being read and parsed or being answered, and the
next requests of clients just answered: under steady load a client that has its answer
sends the next one), at most ``max_wait_ms`` from the batch's first input; never when a
request is alone. A predict call costs about as much for 1 row as for many,
so the call that waits for the requests on their way answers them all for the price of
one. If the batch fails, or
the predictions cannot be split by rows, each input is predicted on its own, so every
caller gets the answer (or the error) it would have got alone.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

Predict = Callable[[Any], Any]


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(eq=False)  # identity: inputs (DataFrames) do not compare to a bool
class _Item:
    data: Any
    rows: int
    key: Hashable
    # released once result or error is set; its caller waits on it. A bare lock, not an
    # Event: an Event's waiter, woken, blocks again on the Event's own lock, which the
    # setter holds, so each hand-over would cost two wake-ups instead of one
    ready: threading.Lock = field(default_factory=_held_lock)
    finished: bool = False
    result: Any = None
    error: BaseException | None = None


def batch_key(data: Any) -> Hashable | None:
    """What must match for inputs to share a batch; None if the input cannot be batched."""
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame) and len(data) > 0:
        return ("frame", tuple(map(str, data.columns)), tuple(map(str, data.dtypes)))
    if isinstance(data, np.ndarray) and data.ndim >= 1 and len(data) > 0 \
            and data.dtype != object:
        return ("array", data.shape[1:], data.dtype.str)
    return None


def concatenate(parts: list[Any]) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(parts[0], pd.DataFrame):
        return pd.concat(parts, ignore_index=True)
    return np.concatenate(parts)


def split(predictions: Any, sizes: list[int]) -> list[Any] | None:
    """Each caller's rows of the batch's predictions; None when they do not split by row."""
    import numpy as np
    import pandas as pd

    if not hasattr(predictions, "__len__") or len(predictions) != sum(sizes):
        return None
    out: list[Any] = []
    start = 0
    for size in sizes:
        end = start + size
        if isinstance(predictions, pd.DataFrame | pd.Series):
            out.append(predictions.iloc[start:end].reset_index(drop=True))
        elif isinstance(predictions, np.ndarray | list):
            out.append(predictions[start:end])
        else:
            return None
        start = end
    return out


class Batcher:
    def __init__(self, predict: Predict, *, max_rows: int = 256, max_wait_ms: float = 2.0,
                 on_batch: Callable[[int, int], None] | None = None,
                 expected: Callable[[], int] = lambda: 0) -> None:
        """``expected()``: requests the service has received and not yet answered, plus
        those it expects now (``Service.expected``); those the batcher does not hold are on
        their way, and a batch waits for them, at most ``max_wait_ms``."""
        self._predict = predict
        self._expected = expected
        self.max_rows = max_rows
        self.max_wait = max_wait_ms / 1000.0
        self._on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._busy = 0  # predictions running (the worker's batch, or a caller's own)
        self._holding = 0  # inputs queued or being predicted (their callers wait here)
        self._cond = threading.Condition()
        self._worker = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._worker.start()

    def predict(self, data: Any) -> Any:
        key = batch_key(data)
        if key is None:
            return self._predict(data)
        item = _Item(data=data, rows=len(data), key=key)
        with self._cond:
            # alone (nothing queued, running, or on its way but this one): predict in this
            # thread, which saves the two thread hand-offs; the answer is the same either way
            alone = not self._queue and not self._busy and self._on_the_way() <= 1
            self._holding += 1
            if alone:
                self._busy += 1
            else:
                self._queue.append(item)
                self._cond.notify_all()
        if alone:
            try:
                self._run([item])
            finally:
                with self._cond:
                    self._busy -= 1
        item.ready.acquire()
        if item.error is not None:
            raise item.error
        return item.result

    def _on_the_way(self) -> int:
        """Requests in flight that the batcher does not hold (called with the lock)."""
        return self._expected() - self._holding

    def _take(self) -> list[_Item]:
        with self._cond:
            while not self._queue:
                self._cond.wait()
            batch = [self._queue.popleft()]
            self._busy += 1
            rows = batch[0].rows
            deadline = time.monotonic() + self.max_wait
            while rows < self.max_rows:
                compatible = [i for i in self._queue if i.key == batch[0].key
                              and rows + i.rows <= self.max_rows]
                for item in compatible:
                    if rows + item.rows > self.max_rows:
                        break
                    self._queue.remove(item)
                    batch.append(item)
                    rows += item.rows
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._on_the_way() <= 0:
                    break
                self._cond.wait(min(remaining, 0.0005))
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            try:
                self._run(batch)
            except BaseException as exc:  # noqa: BLE001 - never leave a caller waiting
                left = [item for item in batch if not item.finished]
                for item in left:
                    item.error = exc
                self._done(left)
            finally:
                with self._cond:
                    self._busy -= 1

    def _done(self, items: list[_Item]) -> None:
        """Hand the results over: from now on these requests are being answered."""
        with self._cond:
            self._holding -= len(items)
        for item in items:
            item.finished = True
            item.ready.release()

    def _run(self, batch: list[_Item]) -> None:
        if len(batch) > 1:
            try:
                predictions = self._predict(concatenate([i.data for i in batch]))
                parts = split(predictions, [i.rows for i in batch])
            except Exception:  # noqa: BLE001 - one bad input must not fail the others
                parts = None
            if parts is not None:
                for item, part in zip(batch, parts, strict=True):
                    item.result = part
                if self._on_batch:
                    self._on_batch(len(batch), sum(i.rows for i in batch))
                self._done(batch)
                return
        for item in batch:
            try:
                item.result = self._predict(item.data)
            except BaseException as exc:  # noqa: BLE001 - handed back to its caller
                item.error = exc
            if self._on_batch:
                self._on_batch(1, item.rows)
            self._done([item])
