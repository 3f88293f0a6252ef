"""The HTTP transport: a threading HTTP/1.1 server, its routes and its request handler.

Who may call what (``guard``, the model's auth file; None: no auth file configured, all
open): ``POST /invocations`` needs a token unless the file says ``none``, and so do
``GET /openapi.json``, ``/docs`` and ``/metadata`` (they carry the model's input example,
possibly real rows); ``/ping``, ``/health``, ``/version`` and ``/metrics`` stay open for
probes and scrapers. An auth file that cannot be read is the server's fault: guarded
routes answer 503; ``/health`` and ``/ping`` stay 200 (the model is loaded): the kubelet's
liveness probe asks /health, and restarting every pod of the model would turn the 503 that
says what is wrong into refused connections.

Every answer is counted once, with the status it is sent with and the route it matched
(``metrics.OTHER`` when none did), just before it is sent: a client that has its answer
finds it in the next scrape.
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from trainship.serving import model_spec, protocol, request_head
from trainship.serving.guard import TOKEN_HEADER, Guard
from trainship.serving.metrics import CONTENT_TYPE, INVOCATIONS, OTHER
from trainship.serving.service import Service

Route = Callable[[], protocol.Reply]
# GET routes that need the token when the model has token auth
GUARDED_GETS = frozenset({"/openapi.json", "/docs", "/metadata"})
_DECIMAL = re.compile(r"[0-9]{1,20}")


def body_length(headers: Any) -> int | protocol.Reply:
    """The body's length from the request's headers, or the answer to a body this server
    cannot delimit: a transfer coding (chunked; 501), a Content-Length that is not one
    ASCII decimal number, or several (400). ``int()`` alone took ``-1`` (then ``read(-1)``
    read to the end of the stream, past MAX_BODY_BYTES) and ``x`` (an error, no answer)."""
    if headers.get("Transfer-Encoding") is not None:
        return protocol.TRANSFER_CODING
    values = headers.get_all("Content-Length") or []
    if not values:
        return 0
    if len(values) > 1 or not _DECIMAL.fullmatch(values[0].strip()):
        return protocol.BAD_CONTENT_LENGTH
    return int(values[0])


def get_routes(service: Service) -> dict[str, Route]:
    """``GET`` routes by path (``POST`` has one: ``/invocations``)."""
    def score(body: bytes) -> tuple[int, bytes]:  # the example response (model_spec.Pages)
        reply = protocol.invocations(body, protocol.JSON, service.model, service.input_schema)
        return reply.status, reply.body

    pages = model_spec.Pages(model_spec.load_spec(service.model.metadata, service.model_dir,
                                                  service.metadata), score)
    return {
        "/ping": lambda: protocol.PING,
        "/health": lambda: protocol.PING,
        "/version": lambda: protocol.MLFLOW_VERSION,
        "/metrics": lambda: protocol.Reply(200, CONTENT_TYPE, service.metrics.render()),
        "/metadata": lambda: protocol.metadata(service.metadata),
        "/openapi.json": lambda: protocol.Reply(200, protocol.JSON, pages.openapi()),
        "/docs": lambda: protocol.Reply(200, "text/html; charset=utf-8", pages.docs()),
    }


def make_handler(service: Service, guard: Guard | None = None
                 ) -> type[BaseHTTPRequestHandler]:
    """The request handler; ``guard``: who may call /invocations (None: anyone)."""
    routes = get_routes(service)
    metrics = service.metrics

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "trainship-serving"
        wbufsize = 64 * 1024  # headers and body leave in one write
        _counted = False  # this request is counted in flight (service.received)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def handle_one_request(self) -> None:
            self._counted = False
            try:
                super().handle_one_request()
            finally:
                if self._counted:  # in flight from its first line to its answer
                    service.answered(self, closing=self.close_connection)

        def parse_request(self) -> bool:
            # called once a request's first line is read (not for an idle connection)
            self._counted = True
            service.received(self)
            return request_head.parse_request(self)  # the standard library's, faster

        def finish(self) -> None:
            service.closed(self)
            super().finish()

        def setup(self) -> None:
            super().setup()
            # one segment per response and no Nagle delay (40 ms with delayed ACKs)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, reply: protocol.Reply) -> None:
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()

        def _refusal(self) -> protocol.Reply | None:
            """The answer to a request the guard refuses; None: it may go on."""
            refused = None if guard is None else guard.check(
                self.headers.get("Authorization"), self.headers.get(TOKEN_HEADER))
            return None if refused is None else protocol.REFUSED[refused]

        def do_GET(self) -> None:
            started = time.perf_counter()
            path = self.path.split("?", 1)[0]
            route = routes.get(path)
            refused = self._refusal() if route is not None and path in GUARDED_GETS else None
            if refused is not None:
                reply = refused
            else:
                reply = route() if route is not None else protocol.NOT_FOUND
            metrics.observe(path if route is not None else OTHER, reply.status,
                            time.perf_counter() - started)
            self._send(reply)

        def do_POST(self) -> None:
            started = time.perf_counter()
            path = self.path.split("?", 1)[0]
            length = body_length(self.headers)
            route = INVOCATIONS if path == INVOCATIONS else OTHER
            refused = None if route == OTHER else self._refusal()
            if isinstance(length, protocol.Reply):  # the body cannot be delimited
                reply = length
                self.close_connection = True
            elif refused is not None:  # before the body: a stranger's upload is never read
                reply = refused
                self.close_connection = length > 0  # the body is not read
            elif route == OTHER or length > protocol.MAX_BODY_BYTES:
                reply = protocol.NOT_FOUND if route == OTHER else protocol.BODY_TOO_LARGE
                self.close_connection = length > 0  # the body is not read
            else:
                body = self.rfile.read(length)
                content_type = self.headers.get("Content-Type", "application/json")
                reply = service.invoke(body, content_type)
            metrics.observe(route, reply.status, time.perf_counter() - started)
            self._send(reply)

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
