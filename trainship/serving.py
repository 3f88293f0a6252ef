"""The inference service: MLflow's scoring protocol plus Prometheus /metrics.

``python -m trainship.serving --model-dir DIR --port N`` serves the pyfunc model in DIR.
Requests are parsed and answered by MLflow's own scoring functions, so responses match
``mlflow models serve`` for every input format (dataframe_split, dataframe_records,
instances, inputs, params, CSV).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MAX_BODY_BYTES = 50 * 1024 * 1024


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0

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
        return "\n".join(lines) + "\n"


class Service:
    def __init__(self, model_dir: Path) -> None:
        from mlflow.pyfunc import load_model

        self.model = load_model(str(model_dir))
        self.input_schema = self.model.metadata.get_input_schema()
        self.metrics = Metrics()
        meta_file = model_dir.parent / "trainship-image.json"
        self.metadata: dict[str, Any] = (json.loads(meta_file.read_text())
                                         if meta_file.exists() else {})

    def invoke(self, body: bytes, content_type: str) -> tuple[int, str, bytes]:
        """Score a request; errors answer as MLflow's server does (status from the error)."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc import scoring_server

        try:
            result = scoring_server.invocations(body.decode("utf-8", "replace"), content_type,
                                                self.model, self.input_schema)
        except MlflowException as exc:
            return (exc.get_http_status_code(), "application/json",
                    exc.serialize_as_json().encode())
        except Exception as exc:  # noqa: BLE001 - a bad request must never kill the server
            error = MlflowException(f"{type(exc).__name__}: {exc}")
            return 500, "application/json", error.serialize_as_json().encode()
        return result.status, result.mimetype, result.response.encode()


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


def serve(model_dir: Path, host: str, port: int) -> None:
    service = Service(model_dir)
    server = Server((host, port), make_handler(service))
    server.daemon_threads = True

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"serving {model_dir} on http://{host}:{port}", flush=True)
    server.serve_forever()
    server.server_close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trainship.serving")
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    serve(args.model_dir, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
