"""API Gateway, locally: HTTP requests become REST API proxy events for lambdas.api.handler."""

from __future__ import annotations

import json
import threading
import urllib.parse
import uuid
from http.server import ThreadingHTTPServer
from typing import Any

from trainship.local.lambda_runtime import LambdaContext
from trainship.quick_http import QuickHandler

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


def proxy_event(method: str, raw_path: str, headers: dict[str, str], body: str,
                source_ip: str = "127.0.0.1") -> dict[str, Any]:
    parsed = urllib.parse.urlsplit(raw_path)
    query = urllib.parse.parse_qs(parsed.query)
    return {
        "resource": parsed.path,
        "path": parsed.path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None,
        "stageVariables": None,
        "body": body or None,
        "isBase64Encoded": False,
        "requestContext": {
            "requestId": str(uuid.uuid4()), "stage": "local", "httpMethod": method,
            "path": parsed.path, "resourcePath": parsed.path, "accountId": "000000000000",
            "identity": {"sourceIp": source_ip},
        },
    }


# One invocation at a time, as Lambda runs the API function: "For each concurrent request,
# Lambda provisions a separate instance of your execution environment" ("Understanding
# Lambda function scaling", AWS Lambda Developer Guide). The handler relies on it:
# Powertools' resolver keeps the current request on the router (a class attribute), so two
# requests in one process at once could each read the other's body.
_ONE_INVOCATION = threading.Lock()


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    """lambdas.api.handler on one API Gateway proxy event, one at a time."""
    # imported once the daemon has set the stack's environment, as Lambda imports a
    # handler in its function's environment (Powertools reads it at import)
    from lambdas.api import handler

    with _ONE_INVOCATION:
        response: dict[str, Any] = handler(event, LambdaContext("Api"))
    return response


class _Handler(QuickHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply(413, {"Content-Type": "application/json"}, json.dumps({
                "error": "PayloadTooLarge", "message": "The body is larger than 10 MB",
                "details": f"{length} bytes", "help": "Send at most 10 MB."}))
            self.close_connection = True
            return
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        event = proxy_event(self.command, self.path, dict(self.headers.items()), body,
                            self.client_address[0])
        try:
            response = invoke(event)
        except Exception as exc:  # noqa: BLE001 - API Gateway answers 502 on a crash
            self._reply(502, {"Content-Type": "application/json"}, json.dumps({
                "error": "InternalError", "message": f"{type(exc).__name__}: {exc}",
                "details": "", "help": "Report this with the request."}))
            return
        headers = dict(response.get("headers") or {})
        for key, values in (response.get("multiValueHeaders") or {}).items():
            headers[key] = values[-1]
        self._reply(int(response["statusCode"]), headers, response.get("body") or "")

    def _reply(self, status: int, headers: dict[str, str], body: str) -> None:
        data = body.encode()
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle  # noqa: N815


class ApiServer:
    def __init__(self, host: str, port: int) -> None:
        self.server = ThreadingHTTPServer((host, port), _Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
