"""The local front (trainship.cluster.proxy, driven through trainship.cluster.front): new
connections follow the target at once, a retired version is drained (in-flight answers
finish, keep-alive connections move to the live version at a message boundary), and the
grace period bounds the wait."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.helpers import LocalServer
from trainship.cluster import front
from trainship.cluster.proxy import Framing


def backend(name: str) -> LocalServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like trainship.serving

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

        def do_GET(self) -> None:
            if self.path.startswith("/slow/"):
                time.sleep(float(self.path.rsplit("/", 1)[1]))
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return LocalServer(Handler).start()


def port_of(server: LocalServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


Fronted = tuple[Path, int, LocalServer, LocalServer]


@pytest.fixture
def fronted(tmp_path: Path) -> Iterator[Fronted]:
    """A front (the real proxy process) pointing at backend "one"; "two" stands by."""
    one, two = backend("one"), backend("two")
    directory = tmp_path / "model"
    record = front.ensure(directory, "model")
    front.point(directory, port_of(one))
    try:
        yield directory, record["port"], one, two
    finally:
        front.stop(directory)
        one.close()
        two.close()


def get(port: int, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_new_connections_follow_the_target_and_the_port_stays(fronted: Fronted) -> None:
    directory, port, _, two = fronted
    assert get(port) == (200, "one")
    front.point(directory, port_of(two))
    assert get(port) == (200, "two")
    # started again (a restart): the same port
    front.stop(directory)
    assert front.ensure(directory, "model")["port"] == port
    assert get(port) == (200, "two")


def test_no_target_is_503(tmp_path: Path) -> None:
    directory = tmp_path / "empty"
    record = front.ensure(directory, "empty")
    try:
        status, body = get(record["port"])
        assert status == 503 and "no model version is serving" in body
    finally:
        front.stop(directory)


def test_drain_waits_for_the_answer_in_flight(fronted: Fronted) -> None:
    directory, port, one, two = fronted
    answers: list[tuple[int, str]] = []
    slow = threading.Thread(target=lambda: answers.append(get(port, "/slow/1.0")))
    slow.start()
    time.sleep(0.3)  # the request is at "one"
    front.point(directory, port_of(two))
    assert get(port) == (200, "two")  # a new connection goes to the new version at once
    started = time.monotonic()
    assert front.drain(directory, port_of(one), seconds=10) == 0
    waited = time.monotonic() - started
    slow.join(5)
    assert answers == [(200, "one")]
    assert 0.4 < waited < 5  # until the slow answer was sent, not the grace period


def test_idle_keep_alive_connection_moves_to_the_live_version(fronted: Fronted) -> None:
    directory, port, one, two = fronted
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"one"
    sock = conn.sock
    front.point(directory, port_of(two))
    started = time.monotonic()
    assert front.drain(directory, port_of(one), seconds=10) == 0
    assert time.monotonic() - started < 2  # idle: let go of at once
    one.close()  # the retired version is gone
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"two"
    assert conn.sock is sock  # the same client connection, never closed
    conn.close()


def test_busy_keep_alive_connection_moves_after_its_answer(fronted: Fronted) -> None:
    directory, port, one, two = fronted
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"one"
    conn.request("GET", "/slow/0.8")
    time.sleep(0.2)
    front.point(directory, port_of(two))
    drained: list[int] = []
    waiter = threading.Thread(
        target=lambda: drained.append(front.drain(directory, port_of(one), seconds=10)))
    waiter.start()
    assert conn.getresponse().read() == b"one"  # the request in flight is answered
    waiter.join(5)
    assert drained == [0]
    one.close()
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"two"
    conn.close()


def test_the_grace_period_bounds_the_drain(fronted: Fronted) -> None:
    directory, port, one, two = fronted
    answers: list[tuple[int, str]] = []
    slow = threading.Thread(target=lambda: answers.append(get(port, "/slow/2.0")))
    slow.start()
    time.sleep(0.3)
    front.point(directory, port_of(two))
    started = time.monotonic()
    assert front.drain(directory, port_of(one), seconds=0.5) == 1  # still answering
    assert 0.4 < time.monotonic() - started < 1.5
    slow.join(5)
    assert answers == [(200, "one")]
    assert front.drain(directory, port_of(one), seconds=2) == 0


def test_drain_without_a_running_front_is_nothing_to_wait_for(tmp_path: Path) -> None:
    assert front.drain(tmp_path / "none", 1234, seconds=1) == 0


# --- the framing alone ------------------------------------------------------------------

def test_framing_finds_the_boundary_after_a_chunked_answer() -> None:
    framing = Framing()
    assert framing.at_boundary()
    framing.client_sent(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    assert not framing.at_boundary()
    framing.version_sent(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert not framing.at_boundary()
    framing.version_sent(b"0\r\n\r\n")
    assert framing.at_boundary()


def test_framing_after_a_100_continue() -> None:
    framing = Framing()
    framing.client_sent(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                        b"Expect: 100-continue\r\n\r\n")
    framing.version_sent(b"HTTP/1.1 100 Continue\r\n\r\n")
    framing.client_sent(b"{}")
    assert not framing.at_boundary()
    framing.version_sent(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert framing.at_boundary()


def test_framing_a_head_answer_has_no_body() -> None:
    framing = Framing()
    framing.client_sent(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    framing.version_sent(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert framing.at_boundary()


def test_framing_a_partial_or_pipelined_request_is_no_boundary() -> None:
    framing = Framing()
    framing.client_sent(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n")
    framing.version_sent(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not framing.at_boundary()  # /b already went to this version
    partial = Framing()
    partial.client_sent(b"GET /a HTT")
    assert not partial.at_boundary()


def test_framing_connection_close_and_garbage_are_never_a_boundary() -> None:
    closing = Framing()
    closing.client_sent(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    closing.version_sent(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not closing.at_boundary()
    garbage = Framing()
    garbage.client_sent(b"\x16\x03\x01\x02\x00")
    assert not garbage.followed and not garbage.at_boundary()
