"""The inference service over a raw socket: Expect: 100-continue is answered before the body
is sent, and a body the server cannot delimit is refused, the server answering on."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import save_logistic_model, start_serving
from trainship.quick_http import QuickHandler

ROW = b'{"inputs": [[0.1, -1.2, 0.3, 2.0]]}'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    model_dir = save_logistic_model(tmp_path_factory.mktemp("edges") / "model")
    proc, url = start_serving(model_dir, workers=1, tmpdir=tmp_path_factory.mktemp("tmp"))
    try:
        yield "127.0.0.1", int(url.rsplit(":", 1)[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def exchange(address: tuple[str, int], head: bytes, body: bytes = b"",
             close_write: bool = True) -> bytes:
    """Send ``head``; read what comes before any body is sent (up to 10 s); then send
    ``body``, end the stream (``close_write``) and read the rest until the server closes
    (a TimeoutError after 10 s of silence)."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head)
        first = b""
        if body:
            first = sock.recv(65536)  # the interim answer, before the body is sent
            sock.sendall(body)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        return first + b"|" + rest


def test_expect_100_continue_is_answered_before_the_body(server: tuple[str, int]) -> None:
    head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: " + str(len(ROW)).encode() + b"\r\n\r\n")
    first, rest = exchange(server, head, ROW).split(b"|", 1)
    assert first.startswith(b"HTTP/1.1 100 Continue\r\n"), first
    assert b" 200 OK" in first + rest and b"predictions" in first + rest


@pytest.mark.parametrize("header, status", [
    (b"Content-Length: -1", b"400"),
    (b"Content-Length: 12x", b"400"),
    (b"Content-Length: 3\r\nContent-Length: 40", b"400"),
    (b"Transfer-Encoding: chunked", b"501"),
])
def test_a_body_that_cannot_be_delimited_is_refused(server: tuple[str, int], header: bytes,
                                                   status: bytes) -> None:
    head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + header + b"\r\n\r\n")
    # the stream stays open: the server answers and closes without waiting for its end
    answer = exchange(server, head + b"3\r\n{}\n\r\n0\r\n\r\n",
                      close_write=False).split(b"|", 1)[1]
    assert answer.startswith(b"HTTP/1.1 " + status), answer
    assert b"Content-Length" in answer.split(b"\r\n\r\n", 1)[1] \
        or b"Transfer-Encoding" in answer.split(b"\r\n\r\n", 1)[1]
    assert answer.count(b"HTTP/1.1") == 1  # the body is not taken for another request
    ok = exchange(server, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b" 200 OK" in ok


class _Echo(QuickHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def test_a_local_server_answers_expect_100_continue_before_the_body(tmp_path: Path) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        address = (str(httpd.server_address[0]), int(httpd.server_address[1]))
        first, rest = exchange(address, head, b"{}").split(b"|", 1)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n"), first
        assert (first + rest).endswith(b"{}")
    finally:
        httpd.shutdown()
        httpd.server_close()
