"""What every `trainship doctor` check shares: the Check it returns, and AWS's refusals
read as "cannot check" rather than as a failure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["ok", "warn", "fail"]
ClientFactory = Callable[[str, str], Any]  # (service, region) -> boto3 client
HttpGet = Callable[[str], tuple[int, str]]  # url -> (status, body)

KUBERNETES_EXTRA = "trainship[lambda]"
DEPLOY_DOC = "docs/deploy-to-aws.md"

DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
          "UnauthorizedException", "UnrecognizedClientException", "ExpiredToken",
          "ExpiredTokenException", "InvalidClientTokenId"}


@dataclass(frozen=True)
class Check:
    """One line of the report: ``fix`` is a command or a doc pointer when not ok."""

    name: str
    status: Status
    message: str
    fix: str = ""


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Code", ""))


def error_text(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', str(exc))}"


def api_failure(name: str, operation: str, exc: Exception) -> Check:
    if error_code(exc) in DENIED:
        return Check(name, "warn", f"cannot check: your identity may not call {operation} "
                                   f"({error_text(exc)})")
    return Check(name, "fail", f"{operation} failed: {error_text(exc)}")


def client_error() -> type[Exception]:
    from botocore.exceptions import ClientError

    error: type[Exception] = ClientError
    return error
