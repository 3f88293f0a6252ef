"""Request handlers of the local stack's HTTP servers, without the 40 ms stalls.

``http.server.BaseHTTPRequestHandler`` writes a response's head when ``end_headers`` is
called and its body with a second write, on a socket with Nagle's algorithm on: the second
segment waits until the first is acknowledged, and a client that has nothing to send
delays its ACK (40 ms on Linux). An MLflow call through the local MLflow gate took 70-160
ms (25-60 ms since; MLflow itself answers in 10-35 ms). ``QuickHandler`` buffers the
writes (head and body leave in one write when the request is handled: the base class
flushes ``wfile`` after each request) and turns Nagle off, as the inference service's
handler does (trainship/serving/http.py, which the image ships alone)."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler


class QuickHandler(BaseHTTPRequestHandler):
    wbufsize = 64 * 1024  # the head and the body leave in one write (flushed per request)

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: the interim answer leaves now (buffered, it would wait
        for the final one while the client waits for it before sending the body)."""
        go_on = super().handle_expect_100()
        self.wfile.flush()
        return go_on
