"""A fake trainship API on a local port, and the ``trainship`` command run against it as
a user runs it (the installed command, in a subprocess): what the CLI tests share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.helpers import LocalServer
from trainship.errors import InvalidRequest
from trainship.request import parse_request

TRAINSHIP = Path(sys.executable).with_name("trainship")
SCRIPT = "import mlflow\nprint('training')\n"

Reply = tuple[int, str, bytes] | tuple[int, str, bytes, dict[str, str]]  # + headers
Route = Callable[[Any], Reply]


def json_reply(status: int, doc: Any) -> Reply:
    return status, "application/json", json.dumps(doc).encode()


class FakeApi:
    """Routes (method, path) to a function of the JSON body; records what was asked."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.seen: list[tuple[str, str, Any]] = []
        self.headers: list[dict[str, str]] = []  # each request's headers, in order
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:  # CSV, or a body that is not JSON: as text
                    body = raw.decode(errors="replace")
                api.seen.append((self.command, self.path, body))
                api.headers.append(dict(self.headers.items()))
                route = api.routes.get((self.command, self.path))
                status, ctype, data, *extra = (route(body) if route else json_reply(
                    404, {"error": "NotFound", "message": f"No route {self.path}"}))
                self.send_response(status)
                for name, value in (extra[0] if extra else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

        self.local = LocalServer(Handler).start()
        self.url = self.local.url

    def close(self) -> None:
        self.local.close()


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRAINSHIP_API", "TRAINSHIP_DEBUG", "TRAINSHIP_HOME",
                        "TRAINSHIP_INFERENCE_TOKEN")}
    # an empty state directory: no local stack is running there; the tokens the CLI stores
    # (trainship.token_store) stay in the test's own directory
    return {**env, "TRAINSHIP_HOME": str(tmp_path / "home"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"), **extra}


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(TRAINSHIP), *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env_for(tmp_path, **env), timeout=120)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("trainship: ")
    return lines[0]


def real_submit(body: Any) -> Reply:
    """POST /deployments as the API validates it: the real 400 document, or 202."""
    try:
        parse_request(body)
    except InvalidRequest as exc:
        return json_reply(400, exc.document().model_dump())
    return json_reply(202, {"deployment_id": "d-0123456789abcdef", "status": "RUNNING",
                            "status_url": "/deployments/d-0123456789abcdef"})


def record(status: str, **extra: Any) -> dict[str, Any]:
    return {"deployment_id": "d-0123456789abcdef", "status": status,
            "steps": [{"name": "ValidateRequest", "status": "SUCCEEDED", "seconds": 0.1},
                      {"name": "TrainModel", "status": "RUNNING"}], **extra}
