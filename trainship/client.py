"""A small client for the trainship API (local or on AWS)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, document: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {document.get('error')}: {document.get('message')}")
        self.status = status
        self.document = document


def execute_api_region(url: str) -> str | None:
    """The region of an API Gateway URL (https://ID.execute-api.REGION.amazonaws.com/...)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 5 and parts[1] == "execute-api" and host.endswith(".amazonaws.com"):
        return parts[2]
    return None


AWS_EXTRA_HINT = ("trainship: this API is an API Gateway URL (IAM auth): signing its requests "
                  "needs boto3, which plain `pip install trainship` leaves out; "
                  "run: pip install 'trainship[aws]'")


def require_signing() -> None:
    """Exit with one line naming the extra when boto3/botocore are not installed."""
    try:
        import boto3  # noqa: F401
        import botocore.auth  # noqa: F401
    except ImportError:
        raise SystemExit(AWS_EXTRA_HINT) from None


def sigv4_headers(method: str, url: str, body: bytes | None, headers: dict[str, str],
                  region: str) -> dict[str, str]:
    """Sign a request for API Gateway's IAM auth with the default AWS credentials."""
    require_signing()
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise SystemExit("no AWS credentials found to sign the request (IAM-authorised API)")
    request = AWSRequest(method=method, url=url, data=body or b"", headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


class Client:
    """Talks to the API; requests to API Gateway URLs are signed with SigV4."""

    def __init__(self, base_url: str, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.region = execute_api_region(self.base_url)
        if self.region:
            require_signing()  # before anything is sent or read

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        url = self.base_url + path
        if self.region:
            all_headers = sigv4_headers(method, url, data, all_headers, self.region)
        req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                raw = response.read().decode()
                ctype = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode(errors="replace")
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {"error": f"HTTP{exc.code}", "message": raw[:500]}
            raise ApiError(exc.code, doc) from None
        return json.loads(raw) if ctype.startswith("application/json") else raw

    def submit(self, body: dict[str, Any], idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.request("POST", "/deployments", body, headers)

    def get(self, deployment_id: str) -> Any:
        return self.request("GET", f"/deployments/{deployment_id}")

    def list(self) -> Any:
        return self.request("GET", "/deployments")["deployments"]

    def logs(self, deployment_id: str) -> str:
        return str(self.request("GET", f"/deployments/{deployment_id}/logs"))


def default_home() -> Path:
    return Path(os.environ.get("TRAINSHIP_HOME", ".trainship"))


def resolve_api(api: str | None, *, start: bool = True) -> str:
    """--api, else $TRAINSHIP_API, else the local stack (started when not running)."""
    if api:
        return api
    if os.environ.get("TRAINSHIP_API"):
        return os.environ["TRAINSHIP_API"]
    from trainship.local import stack

    info = stack.read_info(default_home()) if not start else stack.up(default_home())
    if info is None:
        raise SystemExit("the local stack is not running: `trainship local up` starts it")
    return str(info["api"])
