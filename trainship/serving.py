"""The inference service: MLflow's scoring protocol plus Prometheus /metrics.

``python -m trainship.serving --model-dir DIR --port N`` serves the pyfunc model in DIR.
Requests are parsed and answered by MLflow's own scoring functions, so responses match
``mlflow models serve`` for every input format (dataframe_split, dataframe_records,
instances, inputs, params, CSV).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from trainship.batching import Batcher

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 1 << 30)
MAX_BODY_BYTES = 50 * 1024 * 1024


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.batches: dict[int, int] = {}
        self.batch_rows = 0

    def batch(self, requests: int, rows: int) -> None:
        bucket = next(b for b in BATCH_BUCKETS if requests <= b)
        with self.lock:
            self.batches[bucket] = self.batches.get(bucket, 0) + 1
            self.batch_rows += rows

    def observe(self, path: str, status: int, seconds: float) -> None:
        with self.lock:
            key = (path, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            if path == "/invocations":
                self.latency_sum += seconds
                self.latency_count += 1
                for i, bound in enumerate(LATENCY_BUCKETS):
                    if seconds <= bound:
                        self.buckets[i] += 1

    def render(self) -> str:
        lines = ["# HELP trainship_requests_total Requests by path and status.",
                 "# TYPE trainship_requests_total counter"]
        with self.lock:
            for (path, status), count in sorted(self.requests.items()):
                lines.append(f'trainship_requests_total{{path="{path}",status="{status}"}} '
                             f"{count}")
            lines += ["# HELP trainship_request_seconds Latency of /invocations.",
                      "# TYPE trainship_request_seconds histogram"]
            for bound, count in zip(LATENCY_BUCKETS, self.buckets, strict=True):
                lines.append(f'trainship_request_seconds_bucket{{le="{bound}"}} {count}')
            lines.append(f'trainship_request_seconds_bucket{{le="+Inf"}} {self.latency_count}')
            lines.append(f"trainship_request_seconds_sum {self.latency_sum}")
            lines.append(f"trainship_request_seconds_count {self.latency_count}")
            errors = sum(c for (path, status), c in self.requests.items()
                         if path == "/invocations" and status >= 400)
            lines += ["# HELP trainship_errors_total /invocations answered with 4xx or 5xx.",
                      "# TYPE trainship_errors_total counter",
                      f"trainship_errors_total {errors}",
                      "# HELP trainship_batch_requests Requests per predict call.",
                      "# TYPE trainship_batch_requests histogram"]
            cumulative = 0
            for bound in BATCH_BUCKETS:
                cumulative += self.batches.get(bound, 0)
                label = "+Inf" if bound == BATCH_BUCKETS[-1] else str(bound)
                lines.append(f'trainship_batch_requests_bucket{{le="{label}"}} {cumulative}')
            lines.append(f"trainship_batch_requests_count {cumulative}")
            lines.append(f"trainship_batch_rows_total {self.batch_rows}")
        return "\n".join(lines) + "\n"


class Service:
    """The loaded model, its metrics and its batcher (one per worker process)."""

    def __init__(self, model: Any, model_dir: Path, *, max_batch_rows: int = 256,
                 max_wait_ms: float = 2.0) -> None:
        self.model = model
        self.input_schema = self.model.metadata.get_input_schema()
        self.metrics = Metrics()
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

    def _arrived(self) -> None:
        """This request's input is parsed and handed on: it no longer 'arrives'."""
        if getattr(self._local, "arriving", False):
            self._local.arriving = False
            with self._lock:
                self.arriving -= 1

    def invoke(self, body: bytes, content_type: str) -> tuple[int, str, bytes]:
        """Score a request; errors answer as MLflow's server does (status from the error)."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc import scoring_server

        with self._lock:
            self.arriving += 1
            self.in_flight += 1
        self._local.arriving = True
        try:
            result = scoring_server.invocations(body.decode("utf-8", "replace"), content_type,
                                                self.scorer, self.input_schema)
        except MlflowException as exc:
            return (exc.get_http_status_code(), "application/json",
                    exc.serialize_as_json().encode())
        except Exception as exc:  # noqa: BLE001 - a bad request must never kill the server
            error = MlflowException(f"{type(exc).__name__}: {exc}")
            return 500, "application/json", error.serialize_as_json().encode()
        finally:
            self._arrived()
            with self._lock:
                self.in_flight -= 1
        return result.status, result.mimetype, result.response.encode()


class _BatchingModel:
    """What MLflow's scoring function calls: predictions without params go to the batcher."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self.metadata = service.model.metadata

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        self._service._arrived()
        if params:
            return self._service.model.predict(data, params=params)
        assert self._service.batcher is not None
        return self._service.batcher.predict(data)


def make_handler(service: Service) -> type[BaseHTTPRequestHandler]:
    from mlflow.version import VERSION

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "trainship-serving"
        wbufsize = 64 * 1024  # headers and body leave in one write

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def setup(self) -> None:
            super().setup()
            # one segment per response and no Nagle delay (40 ms with delayed ACKs)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def do_GET(self) -> None:
            started = time.perf_counter()
            path = self.path.split("?", 1)[0]
            if path in ("/ping", "/health"):
                self._send(200, b"\n", "application/json")
            elif path == "/version":
                self._send(200, VERSION.encode(), "text/plain")
            elif path == "/metrics":
                self._send(200, service.metrics.render().encode(),
                           "text/plain; version=0.0.4")
            elif path == "/metadata":
                self._send(200, json.dumps(service.metadata).encode(), "application/json")
            else:
                self._send(404, b'{"error_code": "NOT_FOUND"}', "application/json")
            service.metrics.observe(path, 200 if path != "/" else 404,
                                    time.perf_counter() - started)

        def do_POST(self) -> None:
            started = time.perf_counter()
            path = self.path.split("?", 1)[0]
            if path != "/invocations":
                self._send(404, b'{"error_code": "NOT_FOUND"}', "application/json")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._send(413, b'{"error_code": "BAD_REQUEST", "message": "body too large"}',
                           "application/json")
                self.close_connection = True
                return
            body = self.rfile.read(length)
            content_type = self.headers.get("Content-Type", "application/json")
            status, mimetype, payload = service.invoke(body, content_type)
            self._send(status, payload, mimetype)
            service.metrics.observe(path, status, time.perf_counter() - started)

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 drops connections under load

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client went away (load generators do at the end of a run)
        super().handle_error(request, client_address)

    def server_bind(self) -> None:
        # every worker process binds the same port; the kernel spreads connections
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def runtime_warning_filters() -> None:
    """Serve with Python's default warning filters instead of the ones libraries add while
    they are imported (numpy ABI notices, scipy, urllib3: about ten). scikit-learn (1.6+)
    re-applies every filter for every tree of an ensemble at every predict, so each filter
    costs about 10 us per tree: a third of a 100-tree forest's predict time. Only which
    warnings get printed changes; ``--keep-warning-filters`` keeps them all."""
    import warnings

    warnings.resetwarnings()  # then Python's own defaults, as a bare interpreter has them
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                     ResourceWarning):
        warnings.simplefilter("ignore", category, append=True)


def run_worker(model: Any, model_dir: Path, host: str, port: int, *, max_batch_rows: int,
               max_wait_ms: float, drain_seconds: float = 30.0) -> None:
    """Serve until SIGTERM, then stop accepting and drain in-flight requests."""
    service = Service(model, model_dir, max_batch_rows=max_batch_rows,
                      max_wait_ms=max_wait_ms)
    server = Server((host, port), make_handler(service))

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    server.socket.close()
    deadline = time.monotonic() + drain_seconds
    while service.in_flight > 0 and time.monotonic() < deadline:
        time.sleep(0.01)


def _cache_key(model_dir: Path) -> str:
    """What a load cache is only valid for: this MLmodel, this interpreter and environment,
    this MLflow."""
    import hashlib

    from mlflow.version import VERSION

    digest = hashlib.sha256((model_dir / "MLmodel").read_bytes())
    digest.update(f"{sys.version}|{sys.prefix}|{VERSION}".encode())
    return digest.hexdigest()


def write_load_cache(model: Any, model_dir: Path, cache: Path) -> bool:
    """Pickle the loaded pyfunc model so that a later start unpickles it instead of running
    the flavor's loader (for skops models that loader imports all of scikit-learn). The
    image build does this once, in the builder stage; False when the model cannot be
    pickled (then every start loads it the normal way)."""
    import pickle

    try:
        payload = pickle.dumps(model, protocol=5)
    except Exception as exc:  # noqa: BLE001 - many flavors hold unpicklable handles
        print(f"no load cache: the model cannot be pickled ({type(exc).__name__}: {exc})",
              flush=True)
        return False
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.with_suffix(".key").write_text(_cache_key(model_dir))
    tmp = cache.with_suffix(".tmp")
    tmp.write_bytes(payload)
    tmp.replace(cache)
    return True


def set_keras_backend(model_dir: Path) -> None:
    """Keras 3 picks its backend once, at import, from KERAS_BACKEND (default TensorFlow);
    MLflow records the backend the model was saved with in the MLmodel's ``keras`` flavor
    but does not set it when loading. Set it from there unless the environment says."""
    import yaml

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
    import pickle

    from mlflow.pyfunc import load_model

    if cache is not None and cache.exists() and cache.with_suffix(".key").exists():
        if cache.with_suffix(".key").read_text() == _cache_key(model_dir):
            try:
                return pickle.loads(cache.read_bytes())  # noqa: S301 - written by us above
            except Exception as exc:  # noqa: BLE001 - fall back to the normal load
                print(f"load cache unusable ({type(exc).__name__}: {exc}); loading the "
                      "model", flush=True)
    model = load_model(str(model_dir))
    if cache is not None:
        with contextlib.suppress(OSError):  # a read-only place: no cache, nothing else
            write_load_cache(model, model_dir, cache)
    return model


def serve(model_dir: Path, host: str, port: int, *, workers: int = 1,
          max_batch_rows: int = 256, max_wait_ms: float = 2.0,
          load_cache: Path | None = None, keep_warning_filters: bool = False) -> int:
    """Load the model once, then serve it from ``workers`` processes sharing the port."""
    model = load(model_dir, load_cache)
    from mlflow.pyfunc import scoring_server  # noqa: F401 - imported before the filters go

    if not keep_warning_filters:
        runtime_warning_filters()
    print(f"serving {model_dir} on http://{host}:{port} with {workers} worker(s)", flush=True)
    if workers <= 1:
        run_worker(model, model_dir, host, port, max_batch_rows=max_batch_rows,
                   max_wait_ms=max_wait_ms)
        return 0
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker: its own batcher thread and server, the model shared
            try:
                run_worker(model, model_dir, host, port, max_batch_rows=max_batch_rows,
                           max_wait_ms=max_wait_ms)
            finally:
                os._exit(0)
        children.append(pid)

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
        if code != 0 and status == 0:
            status = 1
            forward(signal.SIGTERM, None)  # one worker died: stop, let the orchestrator restart
    return status


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trainship.serving")
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int,
                        default=int(os.environ.get("TRAINSHIP_SERVING_WORKERS", "0"))
                        or os.cpu_count() or 1, help="processes (default: one per core)")
    parser.add_argument("--max-batch-rows", type=int,
                        default=int(os.environ.get("TRAINSHIP_MAX_BATCH_ROWS", "256")),
                        help="rows per predict call; 1 turns batching off")
    parser.add_argument("--max-wait-ms", type=float,
                        default=float(os.environ.get("TRAINSHIP_MAX_WAIT_MS", "2")),
                        help="how long a batch waits for requests being parsed")
    parser.add_argument("--load-cache", type=Path,
                        default=os.environ.get("TRAINSHIP_LOAD_CACHE") or None,
                        help="a pickle of the loaded model, used when it was made for this "
                             "model and environment (written when missing and writable)")
    parser.add_argument("--keep-warning-filters", action="store_true",
                        default=bool(os.environ.get("TRAINSHIP_KEEP_WARNING_FILTERS")),
                        help="keep the warning filters libraries add on import (slower "
                             "scikit-learn ensembles; see runtime_warning_filters)")
    parser.add_argument("--prepare-load-cache", action="store_true",
                        help="load the model, write --load-cache and exit (the image build)")
    args = parser.parse_args(argv)
    set_keras_backend(args.model_dir)
    if args.prepare_load_cache:
        if args.load_cache is None:
            parser.error("--prepare-load-cache needs --load-cache")
        from mlflow.pyfunc import load_model

        try:
            model = load_model(str(args.model_dir))
        except Exception as exc:  # noqa: BLE001 - the rollout reports it with the logs
            print(f"no load cache: the model does not load here ({type(exc).__name__}: "
                  f"{exc})", flush=True)
            return 0
        write_load_cache(model, args.model_dir, args.load_cache)
        return 0
    return serve(args.model_dir, args.host, args.port, workers=args.workers,
                 max_batch_rows=args.max_batch_rows, max_wait_ms=args.max_wait_ms,
                 load_cache=args.load_cache, keep_warning_filters=args.keep_warning_filters)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
