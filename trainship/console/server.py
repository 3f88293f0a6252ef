"""The console's HTTP server (the local stack's daemon starts it; docs/console.md).

Thin handlers: a route, a ``ConsoleData`` call (trainship.console.data), a page
(trainship.console.pages). Nothing but the page reaches the browser: an unknown
deployment is a 404 page, a failure a 500 page with one line (the traceback goes to the
daemon's log)."""

from __future__ import annotations

import re
import threading
import traceback
import urllib.parse
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

from trainship.console import pages
from trainship.console.data import ConsoleData, DeploymentNotFound, StackData
from trainship.quick_http import QuickHandler

MAX_TRY_BYTES = 1024 * 1024
HTML = "text/html; charset=utf-8"
JSON = "application/json"
ROUTES = (
    ("GET", re.compile(r"^/$"), "home"),
    ("GET", re.compile(r"^/deployments/(?P<id>[^/]+)$"), "deployment"),
    ("GET", re.compile(r"^/deployments/(?P<id>[^/]+)/status\.json$"), "status"),
    ("GET", re.compile(r"^/deployments/(?P<id>[^/]+)/states/(?P<state>[^/]+)$"), "state"),
    ("POST", re.compile(r"^/deployments/(?P<id>[^/]+)/try$"), "try_it"),
)


def route(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The handler's name and the path's (unquoted) parameters; None: no such page."""
    for verb, pattern, name in ROUTES:
        match = pattern.match(path)
        if match and verb == method:
            return name, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
    return None


def try_body(content_type: str, raw: bytes) -> bytes:
    """The model request a try-it form sent: the raw JSON (the page's script), or the
    form's ``body`` field (the form posted without the script)."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = urllib.parse.parse_qs(raw.decode("utf-8", "replace"))
        return (fields.get("body") or [""])[-1].encode()
    return raw


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def refusal(host: str, origin: str | None, method: str) -> str | None:
    """Why a request is refused, else None. The console answers on the loopback address
    only for the names of this machine (a page whose DNS name was rebound to 127.0.0.1
    cannot read it), and a POST (try it: it calls the model with its token) only from
    its own pages (another site's form cannot make one)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name.lower() not in LOOPBACK_HOSTS:
        return f"the console answers requests to 127.0.0.1 or localhost, not {host!r}"
    if method == "POST" and origin is not None \
            and urllib.parse.urlsplit(origin).netloc.lower() != host.lower():
        return f"a POST from another site ({origin}) is refused"
    return None


def handle(data: ConsoleData, method: str, path: str, content_type: str = "",
           body: bytes = b"", *, host: str = "127.0.0.1",
           origin: str | None = None) -> tuple[int, str, str]:
    """(status, content type, text) of a request; the server's whole logic."""
    refused = refusal(host, origin, method)
    if refused is not None:
        return 403, "text/plain; charset=utf-8", refused
    found = route(method, urllib.parse.urlsplit(path).path)
    if found is None:
        return 404, HTML, pages.not_found_page(f"No page at {path}")
    name, params = found
    deployment_id = params.get("id", "")
    try:
        if name == "home":
            return 200, HTML, pages.home_page(data.home())
        if name == "deployment":
            return 200, HTML, pages.deployment_page(data.deployment(deployment_id))
        if name == "status":
            return 200, JSON, pages.status_json(data.status(deployment_id))
        if name == "state":
            state = params["state"]
            return 200, HTML, pages.state_fragment(
                state, data.state_details(deployment_id, state))
        answer = data.try_it(deployment_id, try_body(content_type, body))
        ctype = JSON if answer.body.lstrip().startswith(("{", "[")) else "text/plain"
        return answer.status, ctype, answer.body
    except DeploymentNotFound:
        return 404, HTML, pages.not_found_page(f"No deployment {deployment_id}")
    except Exception as exc:  # noqa: BLE001 - one line to the browser, the rest to the log
        traceback.print_exc()
        return 500, HTML, pages.error_page(f"{type(exc).__name__}: {exc}")


class _Handler(QuickHandler):
    protocol_version = "HTTP/1.1"
    data: ConsoleData  # set on the subclass ConsoleServer makes

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._reply(400, "text/plain", "Content-Length is not a number of bytes")
            self.close_connection = True
            return
        if length > MAX_TRY_BYTES:
            self._reply(413, "text/plain", "the body is larger than 1 MB")
            self.close_connection = True
            return
        raw = self.rfile.read(length) if length else b""
        status, ctype, text = handle(self.data, self.command, self.path,
                                     self.headers.get("Content-Type") or "", raw,
                                     host=self.headers.get("Host") or "",
                                     origin=self.headers.get("Origin"))
        self._reply(status, ctype, text)

    def _reply(self, status: int, ctype: str, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        # no other site may frame the console (a click on "Try it" sends the model's
        # token) or make the browser guess a type
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", "frame-ancestors 'none'")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve  # noqa: N815


class ConsoleServer:
    """The console on ``host:port``; data from the stack (the API at ``api_url``, Step
    Functions from ``sfn``, MLflow at ``mlflow_url``), or from ``data`` when given."""

    def __init__(self, host: str, port: int, api_url: str = "",
                 sfn: Callable[[], Any] | None = None, mlflow_url: str = "", *,
                 data: ConsoleData | None = None) -> None:
        if data is None:
            if sfn is None:
                raise ValueError("ConsoleServer needs a Step Functions client factory or data")
            data = StackData(api_url, sfn, mlflow_url)
        handler = type("ConsoleHandler", (_Handler,), {"data": data})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
