"""One worker's service: the loaded model, its batcher and its metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from trainship.serving import protocol
from trainship.serving.batching import Batcher
from trainship.serving.metrics import Metrics

# a connection answered this recently is expected to send its next request (a client under
# steady load sends it about a round trip after its answer): a batch may wait for it
RETURN_SECONDS = 0.002


class Service:
    """The loaded model, its metrics and its batcher (one per worker process)."""

    def __init__(self, model: Any, model_dir: Path, metrics: Metrics, *,
                 max_batch_rows: int = 256, max_wait_ms: float = 2.0,
                 debug: bool = False) -> None:
        self.model = model
        self.model_dir = model_dir
        self.input_schema = self.model.metadata.get_input_schema()
        self.metrics = metrics
        self.debug = debug  # error documents carry the traceback
        meta_file = model_dir.parent / "trainship-image.json"
        self.metadata: dict[str, Any] = (json.loads(meta_file.read_text())
                                         if meta_file.exists() else {})
        self._lock = threading.Lock()
        self.in_flight = 0  # requests received and not yet answered (``received``)
        self._answered: dict[Hashable, float] = {}  # connection: when its answer left
        self.batcher = (Batcher(self.model.predict, max_rows=max_batch_rows,
                                max_wait_ms=max_wait_ms, on_batch=self.metrics.batch,
                                expected=self.expected)
                        if max_batch_rows > 1 else None)
        self.scorer = _BatchingModel(self) if self.batcher is not None else self.model

    def received(self, connection: Hashable) -> None:
        """A request's first line is read on ``connection``: it is in flight until
        ``answered``. The batcher waits for requests in flight (``batching``); the drain
        at shutdown too."""
        with self._lock:
            self.in_flight += 1
            self._answered.pop(connection, None)

    def answered(self, connection: Hashable, closing: bool = False) -> None:
        """The answer to a request ``received`` on ``connection`` is sent (or the
        connection is gone: ``closing``)."""
        with self._lock:
            self.in_flight -= 1
            if closing:
                self._answered.pop(connection, None)
            else:
                self._answered[connection] = time.monotonic()

    def closed(self, connection: Hashable) -> None:
        """``connection`` is closed: no request comes from it any more."""
        with self._lock:
            self._answered.pop(connection, None)

    def expected(self) -> int:
        """Requests in flight, and those expected now: connections answered less than
        ``RETURN_SECONDS`` ago (a client under steady load sends its next request about a
        round trip after its answer)."""
        with self._lock:
            since = time.monotonic() - RETURN_SECONDS
            for connection in [c for c, at in self._answered.items() if at < since]:
                del self._answered[connection]
            return self.in_flight + len(self._answered)

    def invoke(self, body: bytes, content_type: str) -> protocol.Reply:
        """Score a request (``POST /invocations``)."""
        return protocol.invocations(body, content_type, self.scorer, self.input_schema,
                                    self.debug)


class _BatchingModel:
    """What MLflow's scoring function calls: predictions without params go to the batcher."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self.metadata = service.model.metadata

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        if params:
            return self._service.model.predict(data, params=params)
        assert self._service.batcher is not None
        return self._service.batcher.predict(data)
