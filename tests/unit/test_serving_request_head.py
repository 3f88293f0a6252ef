"""trainship.serving.request_head parses a request's head as http.server does: same result,
same attributes, same headers, same answer on errors, for many requests."""

from __future__ import annotations

import io
import re
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainship.serving import request_head


class Stdlib(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class Ours(Stdlib):
    def parse_request(self) -> bool:
        return request_head.parse_request(self)


def outcome(cls: type[Stdlib], raw: bytes) -> dict[str, Any]:
    handler = cls.__new__(cls)
    handler.rfile = io.BytesIO(raw)
    handler.wfile = io.BytesIO()
    handler.client_address = ("127.0.0.1", 1)
    handler.raw_requestline = handler.rfile.readline(65537)  # type: ignore[attr-defined]
    ok = handler.parse_request()
    headers = getattr(handler, "headers", None)
    return {"ok": ok, "command": handler.command, "path": getattr(handler, "path", None),
            "version": handler.request_version, "close": handler.close_connection,
            "headers": None if headers is None else headers.items(),
            "defects": None if headers is None else [type(d) for d in headers.defects],
            "multipart": None if headers is None else headers.is_multipart(),
            "rest": handler.rfile.read(),  # the body is left where it was
            "answer": re.sub(rb"Date: [^\r]*\r\n", b"", handler.wfile.getvalue())}


REQUESTS = [
    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /ping HTTP/1.0\r\n\r\n",
    b"GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n",
    b"GET //evil.example/path HTTP/1.1\r\n\r\n",
    b"GET /ping\r\n\r\n",
    b"POST /ping\r\n\r\n",
    b"GET\r\n\r\n",
    b"\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET / HTTP/1.1.1\r\n\r\n",
    b"GET / FTP/1.1\r\n\r\n",
    b"GET / HTTP/a.1\r\n\r\n",
    b"GET / HTTP/12345678901.1\r\n\r\n",
    b"GET / x HTTP/1.1\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /invocations HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\r\nnot a header\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nFrom me: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nA:\r\nB:  \t v \r\nA: again\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\nAccept: */*\n\n",
    b"GET / HTTP/1.1\r\nHost: x",
    b"GET / HTTP/1.1\r\nH\xe9: v\xe9\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n",
    b"POST / HTTP/1.1\r\ncontent-type:  Message/rfc822\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 101 + b"\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 99 + b"\r\n",
]


@pytest.mark.parametrize("raw", REQUESTS)
def test_the_same_as_the_standard_library(raw: bytes) -> None:
    assert outcome(Ours, raw) == outcome(Stdlib, raw)


HEADER_LINE = st.one_of(
    st.tuples(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1,
                      max_size=12),
              st.text(st.characters(min_codepoint=0x09, max_codepoint=0xff), max_size=20))
    .map(lambda nv: f"{nv[0]}:{nv[1]}"),
    st.text(st.characters(min_codepoint=0x00, max_codepoint=0xff), max_size=20))


@settings(max_examples=500, deadline=None)
@given(st.lists(HEADER_LINE, max_size=6), st.sampled_from(["\r\n", "\n"]))
def test_any_header_block_gives_the_same_headers(lines: list[str], newline: str) -> None:
    block = "".join(line.replace("\r", "").replace("\n", "") + newline for line in lines)
    raw = ("POST /invocations HTTP/1.1" + newline + block + newline + "body").encode("latin-1")
    assert outcome(Ours, raw) == outcome(Stdlib, raw)
