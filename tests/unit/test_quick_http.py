"""trainship.quick_http: a response's head and body leave in one write, Nagle off."""

from __future__ import annotations

import io
import re
import socket
from pathlib import Path
from typing import Any

from trainship.quick_http import QuickHandler

REPO = Path(__file__).resolve().parents[2]


class _Raw(io.RawIOBase):
    def __init__(self, data: bytes = b"") -> None:
        self.incoming = io.BytesIO(data)
        self.writes: list[bytes] = []

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.incoming.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def write(self, data: Any) -> int:
        self.writes.append(bytes(data))
        return len(data)


class _Connection:
    """What StreamRequestHandler asks of a socket, recording what is sent."""

    def __init__(self, request: bytes) -> None:
        self.raw = _Raw(request)
        self.options: dict[tuple[int, int], int] = {}

    def setsockopt(self, level: int, name: int, value: int) -> None:
        self.options[(level, name)] = value

    def makefile(self, mode: str, buffering: int = -1) -> Any:
        if "r" in mode:
            return io.BufferedReader(self.raw)
        # wbufsize 0 (BaseHTTPRequestHandler's default) would bypass this: the base class
        # then writes through the socket's sendall directly, one call per write
        assert buffering > 0, "writes are not buffered"
        return io.BufferedWriter(self.raw, buffering)

    def sendall(self, data: bytes) -> None:
        self.raw.writes.append(bytes(data))

    def settimeout(self, value: float | None) -> None:
        pass


class _Hello(QuickHandler):
    def do_GET(self) -> None:
        body = b'{"hello": "world"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def test_head_and_body_leave_in_one_write_with_nagle_off() -> None:
    connection = _Connection(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    _Hello(connection, ("127.0.0.1", 1), None)  # type: ignore[arg-type]
    assert connection.options[(socket.IPPROTO_TCP, socket.TCP_NODELAY)] == 1
    assert len(connection.raw.writes) == 1
    sent = connection.raw.writes[0]
    assert sent.startswith(b"HTTP/1.0 200") and sent.endswith(b'{"hello": "world"}')


def test_the_local_servers_all_use_it() -> None:
    """Every request handler outside the inference service (which the image ships alone and
    which does the same itself) derives from QuickHandler."""
    direct = [path.relative_to(REPO) for path in (REPO / "trainship").rglob("*.py")
              if "serving" not in path.parts
              and re.search(r"\(BaseHTTPRequestHandler\)", path.read_text())]
    assert direct == [Path("trainship/quick_http.py")]
