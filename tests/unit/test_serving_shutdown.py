"""A worker notices SIGTERM's shutdown within its serve loop's poll interval."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from trainship.serving import metrics as serving_metrics
from trainship.serving import workers


def test_the_serve_loop_polls_for_shutdown_often(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """socketserver's default poll of 0.5 s made each stop of a model server (a retired
    version, a redeploy) take about 0.6 s; the worker polls every 0.1 s."""
    polls: list[float] = []

    class FakeServer:
        def __init__(self, address: Any, handler: Any) -> None:
            self.socket = self

        def serve_forever(self, poll_interval: float = 0.5) -> None:
            polls.append(poll_interval)

        def close(self) -> None:
            pass

    class FakeService:
        in_flight = 0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

    monkeypatch.setattr(workers, "Server", FakeServer)
    monkeypatch.setattr(workers, "Service", FakeService)
    monkeypatch.setattr(workers, "make_handler", lambda service, guard: None)
    monkeypatch.setattr(serving_metrics, "Metrics", lambda *a, **k: None)
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    workers.run_worker(object(), tmp_path, "127.0.0.1", 0, metrics_dir=tmp_path,
                       max_batch_rows=1, max_wait_ms=0)
    assert polls == [workers.SHUTDOWN_POLL_SECONDS]
    assert workers.SHUTDOWN_POLL_SECONDS <= 0.1
