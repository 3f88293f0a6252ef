"""One worker's service: the loaded model, its batcher and its metrics."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from trainship.serving import protocol
from trainship.serving.batching import Batcher
from trainship.serving.metrics import Metrics


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
        self._local = threading.local()
        self.arriving = 0
        self.in_flight = 0
        self.batcher = (Batcher(self.model.predict, max_rows=max_batch_rows,
                                max_wait_ms=max_wait_ms, on_batch=self.metrics.batch,
                                arriving=lambda: self.arriving)
                        if max_batch_rows > 1 else None)
        self.scorer = _BatchingModel(self) if self.batcher is not None else self.model

    def arrived(self) -> None:
        """This request's input is parsed and handed on: it no longer 'arrives'."""
        if getattr(self._local, "arriving", False):
            self._local.arriving = False
            with self._lock:
                self.arriving -= 1

    def invoke(self, body: bytes, content_type: str) -> protocol.Reply:
        """Score a request (``POST /invocations``), counting it as arriving until its input
        is parsed and in flight until it is answered."""
        with self._lock:
            self.arriving += 1
            self.in_flight += 1
        self._local.arriving = True
        try:
            return protocol.invocations(body, content_type, self.scorer, self.input_schema,
                                        self.debug)
        finally:
            self.arrived()
            with self._lock:
                self.in_flight -= 1


class _BatchingModel:
    """What MLflow's scoring function calls: predictions without params go to the batcher."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self.metadata = service.model.metadata

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        self._service.arrived()
        if params:
            return self._service.model.predict(data, params=params)
        assert self._service.batcher is not None
        return self._service.batcher.predict(data)
