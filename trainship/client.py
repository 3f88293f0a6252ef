"""A small client for the trainship API (local or on AWS)."""

from __future__ import annotations

import builtins
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, cast

from trainship.records import (
    AcceptedJson,
    BriefJson,
    ErrorJson,
    ModelDetailJson,
    ModelJson,
    RecordJson,
)


class ApiError(Exception):
    """The API answered with an HTTP error status (its body is the error document)."""

    def __init__(self, status: int, document: ErrorJson) -> None:
        super().__init__(f"HTTP {status}: {document.get('error')}: {document.get('message')}")
        self.status = status
        self.document = document


class ApiUnavailable(Exception):
    """The API could not be reached, or answered with something that is not its answer
    (not JSON, not the expected shape). ``str(exc)`` is one line: what and what to do."""


class InvalidApiUrl(ValueError):
    """``--api`` / ``$TRAINSHIP_API`` is not an http(s) URL."""


class ClientSetupError(Exception):
    """This machine cannot call the API yet (an extra or credentials are missing)."""


def _reason(exc: BaseException) -> str:
    """A short reason for a network failure: 'connection refused', 'timed out', ..."""
    inner = getattr(exc, "reason", exc)
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    if isinstance(inner, TimeoutError):
        return "timed out"
    if isinstance(inner, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror[:1].lower() + inner.strerror[1:]
    return str(inner) or type(inner).__name__


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
    """ClientSetupError, one line naming the extra, when boto3/botocore are missing."""
    try:
        import boto3  # noqa: F401
        import botocore.auth  # noqa: F401
    except ImportError:
        raise ClientSetupError(AWS_EXTRA_HINT) from None


def sigv4_headers(method: str, url: str, body: bytes | None, headers: dict[str, str],
                  region: str) -> dict[str, str]:
    """Sign a request for API Gateway's IAM auth with the default AWS credentials."""
    require_signing()
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = boto3.Session().get_credentials()
    if credentials is None:
        raise ClientSetupError("no AWS credentials found to sign the request (the API is "
                               "IAM-authorised): run `aws configure`, or set AWS_PROFILE or "
                               "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    request = AWSRequest(method=method, url=url, data=body or b"", headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


class Client:
    """Talks to the API; requests to API Gateway URLs are signed with SigV4."""

    def __init__(self, base_url: str, timeout: float = 30) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidApiUrl(f"{base_url!r} is not an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.region = execute_api_region(self.base_url)
        if self.region:
            require_signing()  # before anything is sent or read

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None, *, expect_json: bool = False) -> Any:
        """JSON answers are decoded, other answers returned as text. An HTTP error status
        raises ApiError (its document: the body, or one made from a non-JSON body); no
        answer, or with ``expect_json`` a non-JSON one, raises ApiUnavailable."""
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        url = self.base_url + path
        if self.region:
            all_headers = sigv4_headers(method, url, data, all_headers, self.region)
        req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                raw = response.read().decode(errors="replace")
                ctype = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode(errors="replace")
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                doc = {"error": f"HTTP{exc.code}", "message": _snippet(raw) or exc.reason}
            elif "error" not in doc:  # e.g. API Gateway's own {"message": ...}
                doc = {"error": f"HTTP{exc.code}", **doc}
            raise ApiError(exc.code, cast(ErrorJson, doc)) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise ApiUnavailable(f"cannot reach the API at {self.base_url} ({_reason(exc)})"
                                 ) from None
        if ctype.startswith("application/json"):
            try:
                return json.loads(raw)
            except ValueError:
                pass
        elif not expect_json:
            return raw
        raise ApiUnavailable(
            f"{self.base_url} answered {method} {path} with something that is not the "
            f"trainship API's JSON ({ctype or 'no Content-Type'}: {_snippet(raw)!r}): check "
            "that --api / TRAINSHIP_API is the trainship API's base URL")

    def _expect(self, answer: Any, *keys: str, what: str) -> dict[str, Any]:
        if not isinstance(answer, dict) or any(key not in answer for key in keys):
            raise ApiUnavailable(f"{self.base_url} answered {what} without "
                                 f"{', '.join(keys)}: {_snippet(json.dumps(answer))!r}: check "
                                 "that --api / TRAINSHIP_API is the trainship API's base URL")
        return answer

    # The answers are the API's records as JSON (trainship.records); only the keys the CLI
    # cannot do without are checked here, so an older or newer API still works.

    def submit(self, body: dict[str, Any], idempotency_key: str | None = None
               ) -> AcceptedJson:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return cast(AcceptedJson, self._expect(
            self.request("POST", "/deployments", body, headers, expect_json=True),
            "deployment_id", what="POST /deployments"))

    def get(self, deployment_id: str) -> RecordJson:
        path = f"/deployments/{urllib.parse.quote(deployment_id, safe='')}"
        return cast(RecordJson, self._expect(self.request("GET", path, expect_json=True),
                                             "deployment_id", "status", what=f"GET {path}"))

    def redrive(self, deployment_id: str) -> RecordJson:
        path = f"/deployments/{urllib.parse.quote(deployment_id, safe='')}/redrive"
        return cast(RecordJson, self._expect(self.request("POST", path, expect_json=True),
                                             "deployment_id", "status",
                                             what=f"POST {path}"))

    def list(self) -> list[BriefJson]:
        answer = self._expect(self.request("GET", "/deployments", expect_json=True),
                              "deployments", what="GET /deployments")
        return cast(list[BriefJson], answer["deployments"])

    def logs(self, deployment_id: str) -> str:
        path = f"/deployments/{urllib.parse.quote(deployment_id, safe='')}/logs"
        return str(self.request("GET", path))

    def delete_model(self, model_name: str, *, purge: bool = False) -> AcceptedJson:
        """DELETE /models/{model_name}: the delete's execution started (202)."""
        path = (f"/models/{urllib.parse.quote(model_name, safe='')}"
                + ("?purge=true" if purge else ""))
        return cast(AcceptedJson, self._expect(self.request("DELETE", path, expect_json=True),
                                               "deployment_id", what=f"DELETE {path}"))

    # (builtins.list: ``list`` is the method above in this class's body)
    def models(self) -> builtins.list[ModelJson]:
        answer = self._expect(self.request("GET", "/models", expect_json=True), "models",
                              what="GET /models")
        return cast(builtins.list[ModelJson], answer["models"])

    def model(self, model_name: str) -> ModelDetailJson:
        path = f"/models/{urllib.parse.quote(model_name, safe='')}"
        return cast(ModelDetailJson, self._expect(
            self.request("GET", path, expect_json=True), "model_name", "versions",
            what=f"GET {path}"))

    def rollback(self, model_name: str, version: str) -> AcceptedJson:
        """POST /models/{model_name}/rollback: the 202 of the rollback's execution."""
        path = f"/models/{urllib.parse.quote(model_name, safe='')}/rollback"
        return cast(AcceptedJson, self._expect(
            self.request("POST", path, {"version": version}, expect_json=True),
            "deployment_id", what=f"POST {path}"))


    def rotate_token(self, model_name: str) -> AcceptedJson:
        """POST /models/{model_name}/token: the 202 of the rotation's execution."""
        path = f"/models/{urllib.parse.quote(model_name, safe='')}/token"
        return cast(AcceptedJson, self._expect(self.request("POST", path, expect_json=True),
                                               "deployment_id", what=f"POST {path}"))


def _snippet(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."

