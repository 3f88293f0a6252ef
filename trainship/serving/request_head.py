"""A request's head (request line and headers), parsed as ``http.server`` parses it, faster.

``BaseHTTPRequestHandler.parse_request`` hands the header block to the ``email`` package's
parser (``http.client.parse_headers``), which was about a tenth of a worker's GIL time at
16 connections (py-spy): more than HTTP's own work. ``parse_request`` here does what the
standard library's does (Python 3.11: the request line's checks and answers, the header
limits, ``Connection`` and ``Expect: 100-continue``) and reads plain ``Name: value`` lines
into the same ``http.client.HTTPMessage`` the email parser makes (its compat32 policy keeps
the name as sent, the value without leading blanks or the line end). Any other header block
(a folded line, a line that is no header) goes to the email parser as before, so every
request gets the headers the standard library would give it;
tests/unit/test_serving_request_head.py compares the two on many requests.
"""

from __future__ import annotations

import email.parser
import http.client
import re
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

# http.client's limits on the header block (its _MAXLINE, _MAXHEADERS)
MAX_LINE = 65536
MAX_HEADERS = 100
# what the email parser's feedparser takes for a header line (its headerRE, less the
# "From " and continuation cases, which go to the email parser)
_PLAIN_HEADER = re.compile(r"([\041-\071\073-\176]+):([^\r\n]*)\r?\n\Z")
# the email parser also reads a multipart or message/* body's structure from the headers
# (its defects, is_multipart): such requests get its message
_STRUCTURED_TYPES = ("multipart/", "message/")
# the standard library's parse_request this module follows; another Python uses its own
COPIED_FROM = (3, 11)


def read_header_lines(rfile: Any) -> list[bytes]:
    """The header block's lines, the empty line that ends it included, as
    ``http.client`` reads them (LineTooLong, HTTPException past its limits)."""
    lines: list[bytes] = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            return lines


def parse_header_lines(lines: list[bytes]) -> http.client.HTTPMessage:
    """The headers ``http.client.parse_headers`` would make of these lines."""
    message = http.client.HTTPMessage()
    for raw in lines[:-1]:
        text = raw.decode("iso-8859-1")
        match = _PLAIN_HEADER.match(text)
        if match is None or text.startswith("From "):
            return _email_parsed(lines)
        message.set_raw(match.group(1), match.group(2).lstrip(" \t"))
    if message.get("Content-Type", "").lstrip().lower().startswith(_STRUCTURED_TYPES):
        return _email_parsed(lines)
    return message


def _email_parsed(lines: list[bytes]) -> http.client.HTTPMessage:
    """What ``http.client.parse_headers`` makes of the lines (the email parser)."""
    parser = email.parser.Parser(_class=http.client.HTTPMessage)
    parsed: http.client.HTTPMessage = parser.parsestr(b"".join(lines).decode("iso-8859-1"))
    return parsed


def parse_request(handler: BaseHTTPRequestHandler) -> bool:
    """``BaseHTTPRequestHandler.parse_request`` (Python 3.11), the headers read by
    ``read_header_lines``/``parse_header_lines``: True if the request may be handled;
    False once the error answer is sent (or for an empty line). On a Python other than
    ``COPIED_FROM`` (a model image's base can bring another), its own parse_request."""
    if sys.version_info[:2] != COPIED_FROM:
        return BaseHTTPRequestHandler.parse_request(handler)
    handler.command = None  # type: ignore[assignment]  # as the standard library does
    handler.request_version = version = handler.default_request_version
    handler.close_connection = True
    # set by handle_one_request (typeshed does not declare it)
    raw: bytes = handler.raw_requestline  # type: ignore[attr-defined]
    requestline = str(raw, "iso-8859-1").rstrip("\r\n")
    handler.requestline = requestline
    words = requestline.split()
    if not words:
        return False
    if len(words) >= 3:  # enough to tell the protocol version
        version = words[-1]
        try:
            if not version.startswith("HTTP/"):
                raise ValueError
            numbers = version.split("/", 1)[1].split(".")
            if len(numbers) != 2 or any(not n.isdigit() or len(n) > 10 for n in numbers):
                raise ValueError
            number = int(numbers[0]), int(numbers[1])
        except (ValueError, IndexError):
            handler.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
            return False
        if number >= (1, 1) and handler.protocol_version >= "HTTP/1.1":
            handler.close_connection = False
        if number >= (2, 0):
            handler.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                               f"Invalid HTTP version ({version.split('/', 1)[1]})")
            return False
        handler.request_version = version
    if not 2 <= len(words) <= 3:
        handler.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
        return False
    command, path = words[:2]
    if len(words) == 2:
        handler.close_connection = True
        if command != "GET":
            handler.send_error(HTTPStatus.BAD_REQUEST,
                               f"Bad HTTP/0.9 request type ({command!r})")
            return False
    handler.command, handler.path = command, path
    if handler.path.startswith("//"):  # gh-87389: no open redirect through //host/path
        handler.path = "/" + handler.path.lstrip("/")
    try:
        handler.headers = parse_header_lines(read_header_lines(handler.rfile))
    except http.client.LineTooLong as err:
        handler.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long",
                           str(err))
        return False
    except http.client.HTTPException as err:
        handler.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers",
                           str(err))
        return False
    connection = handler.headers.get("Connection", "").lower()
    if connection == "close":
        handler.close_connection = True
    elif connection == "keep-alive" and handler.protocol_version >= "HTTP/1.1":
        handler.close_connection = False
    if (handler.headers.get("Expect", "").lower() == "100-continue"
            and handler.protocol_version >= "HTTP/1.1"
            and handler.request_version >= "HTTP/1.1"):
        go_on = bool(handler.handle_expect_100())
        handler.wfile.flush()  # the interim answer must not wait in a write buffer
        return go_on
    return True
