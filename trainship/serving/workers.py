"""Worker processes: one worker serves in this process; more are forked after the model is
loaded (they share it copy-on-write) and bind the same port, and this process supervises
them: it forwards SIGTERM and stops them all when one dies (the orchestrator restarts)."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from trainship.serving import metrics
from trainship.serving.guard import Guard
from trainship.serving.http import Server, make_handler
from trainship.serving.loading import load
from trainship.serving.service import Service
from trainship.serving.warnings import runtime_warning_filters

SHUTDOWN_POLL_SECONDS = 0.1


def run_worker(model: Any, model_dir: Path, host: str, port: int, *, metrics_dir: Path,
               max_batch_rows: int, max_wait_ms: float, drain_seconds: float = 30.0,
               model_info: dict[str, str] | None = None, debug: bool = False,
               auth_file: Path | None = None) -> None:
    """Serve until SIGTERM, then stop accepting and drain in-flight requests."""
    service = Service(model, model_dir, metrics.Metrics(metrics_dir, model_info=model_info),
                      max_batch_rows=max_batch_rows, max_wait_ms=max_wait_ms, debug=debug)
    guard = Guard(auth_file) if auth_file is not None else None
    if guard is not None:
        guard.current()  # read it now: a problem shows in the log at start
    server = Server((host, port), make_handler(service, guard))

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # shutdown() is noticed at the loop's next poll: 0.1 s rather than socketserver's 0.5 s,
    # so a retired or redeployed version stops about 0.4 s sooner (its drain follows)
    server.serve_forever(poll_interval=SHUTDOWN_POLL_SECONDS)
    server.socket.close()
    deadline = time.monotonic() + drain_seconds
    while service.in_flight > 0 and time.monotonic() < deadline:
        time.sleep(0.01)


def supervise(children: list[int], metrics_dir: Path) -> int:
    """Wait for the workers; forward SIGTERM/SIGINT to them; when one exits with an error,
    stop the others. 1 if any worker failed."""

    def forward(signum: int, frame: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    remaining = set(children)
    while remaining:
        pid, code = os.wait()
        remaining.discard(pid)
        metrics.worker_exited(pid, metrics_dir)
        if code != 0 and status == 0:
            status = 1
            forward(signal.SIGTERM, None)  # one worker died: stop, let the orchestrator restart
    return status


def serve(model_dir: Path, host: str, port: int, *, workers: int = 1,
          max_batch_rows: int = 256, max_wait_ms: float = 2.0,
          load_cache: Path | None = None, keep_warning_filters: bool = False,
          model_info: dict[str, str] | None = None, debug: bool = False,
          auth_file: Path | None = None) -> int:
    """Load the model once, then serve it from ``workers`` processes sharing the port;
    ``model_info`` labels ``trainship_model_info`` (what is served); ``auth_file``: who
    may call /invocations (trainship.serving.guard; None: anyone)."""
    metrics_dir = metrics.create_directory()  # before anything imports prometheus_client
    try:
        model = load(model_dir, load_cache)
        if not keep_warning_filters:
            runtime_warning_filters()
        print(f"serving {model_dir} on http://{host}:{port} with {workers} worker(s)",
              flush=True)
        # the model and every imported module stay as long as the process: out of the
        # collector's sight (``python -m trainship.serving`` starts with it off), a full
        # collection walks only what serving allocates (about 200,000 objects less for a
        # scikit-learn model: one that took 0.2-0.4 s takes under a millisecond), and
        # forked workers do not write to the pages they share with this process
        gc.freeze()
        gc.enable()
        options: dict[str, Any] = {"metrics_dir": metrics_dir,
                                   "max_batch_rows": max_batch_rows,
                                   "max_wait_ms": max_wait_ms, "model_info": model_info,
                                   "debug": debug, "auth_file": auth_file}
        if workers <= 1:
            run_worker(model, model_dir, host, port, **options)
            return 0
        children: list[int] = []
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:  # a worker: its own batcher thread and server, the model shared
                code = 0
                try:
                    run_worker(model, model_dir, host, port, **options)
                except BaseException:  # noqa: BLE001 - reported, then the worker's exit code
                    traceback.print_exc()
                    code = 1
                finally:
                    # never return into the parent's code (its finally, its caller)
                    sys.stderr.flush()
                    os._exit(code)
            children.append(pid)
        return supervise(children, metrics_dir)
    finally:
        metrics.remove_directory(metrics_dir)
