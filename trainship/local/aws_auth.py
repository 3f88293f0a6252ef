"""AWS's request authentication and policy evaluation, as the local MLflow gate
(trainship.local.mlflow_gate) applies them: SigV4 signatures recomputed and checked, and
IAM policies evaluated (explicit Deny wins, otherwise an Allow is needed, wildcards,
conditions)."""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
# SigV4: a signature is valid for 15 minutes after its X-Amz-Date (IAM user guide,
# "Elements of an AWS API request signature": requests more than 15 minutes off fail).
MAX_SKEW = dt.timedelta(minutes=15)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class AccessDenied(Exception):
    """Refused like AWS refuses: 403 with a message naming why."""

    def __init__(self, message: str, code: str = "AccessDenied") -> None:
        super().__init__(message)
        self.code = code


# --- SigV4 --------------------------------------------------------------------------------

def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def canonical_query(query: str) -> str:
    """Per the spec: decode, URI-encode names and values, sort by name then value."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in
                    sorted((_encode(k), _encode(v)) for k, v in pairs))


def _raw_query(query: str) -> str:
    """As some signers (requests-auth-aws-sigv4) write it: the wire's pairs, sorted."""
    if not query:
        return ""
    pairs = [p.split("=", 1) if "=" in p else [p, ""] for p in query.split("&")]
    return "&".join("=".join(p) for p in sorted((k, v) for k, v in pairs))


def canonical_uris(path: str) -> list[str]:
    """The spec encodes each segment of the (already encoded) path once more for services
    other than S3; some signers use the path as sent. Both are accepted."""
    doubled = quote(path or "/", safe="/~")
    return [doubled] if doubled == (path or "/") else [doubled, path or "/"]


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


@dataclass(frozen=True)
class Authorization:
    access_key: str
    date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str


def parse_authorization(header: str) -> Authorization:
    if not header.startswith(ALGORITHM + " "):
        raise AccessDenied("Missing Authentication Token", "MissingAuthenticationToken")
    fields = {}
    for part in header[len(ALGORITHM) + 1:].split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    try:
        access_key, date, region, service, terminal = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except (KeyError, ValueError):
        raise AccessDenied("Authorization header requires Credential, SignedHeaders and "
                           "Signature", "IncompleteSignature") from None
    if terminal != "aws4_request":
        raise AccessDenied("Credential should be scoped with aws4_request", "IncompleteSignature")
    return Authorization(access_key, date, region, service, signed, signature)


def string_to_sign(canonical_request: str, amz_date: str, auth: Authorization) -> str:
    scope = f"{auth.date}/{auth.region}/{auth.service}/aws4_request"
    return "\n".join([ALGORITHM, amz_date, scope,
                      hashlib.sha256(canonical_request.encode()).hexdigest()])


def canonical_requests(method: str, target: str, headers: dict[str, str], body: bytes,
                       auth: Authorization) -> list[str]:
    """The canonical request(s) a compliant signer may have built for this request."""
    url = urlsplit(target)
    missing = [h for h in auth.signed_headers if h not in headers]
    if missing or "host" not in auth.signed_headers:
        raise AccessDenied(f"signed headers missing from the request: {missing or ['host']}",
                           "IncompleteSignature")
    canonical_headers = "".join(
        f"{h}:{' '.join(headers[h].split())}\n" for h in auth.signed_headers)
    declared = headers.get("x-amz-content-sha256", "")
    actual = hashlib.sha256(body).hexdigest()
    if declared == "UNSIGNED-PAYLOAD":
        payloads = [declared]
    elif declared and declared != actual and not (method == "GET" and declared == EMPTY_SHA256):
        raise AccessDenied("The provided 'x-amz-content-sha256' header does not match what "
                           "was computed.", "XAmzContentSHA256Mismatch")
    else:
        # requests-auth-aws-sigv4 hashes an empty payload for every GET
        payloads = [actual] if method != "GET" or not body else [EMPTY_SHA256, actual]
    queries = list(dict.fromkeys([canonical_query(url.query), _raw_query(url.query)]))
    signed = ";".join(auth.signed_headers)
    return ["\n".join([method, uri, query, canonical_headers, signed, payload])
            for uri in canonical_uris(url.path) for query in queries for payload in payloads]


def verify_signature(method: str, target: str, headers: dict[str, str], body: bytes,
                     secret: str, auth: Authorization, now: dt.datetime) -> None:
    """Raise AccessDenied unless the request carries a valid SigV4 signature by secret."""
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise AccessDenied("Authorization header requires existence of either a "
                           "'X-Amz-Date' or a 'Date' header.", "IncompleteSignature") from None
    if abs(now - signed_at) > MAX_SKEW or amz_date[:8] != auth.date:
        raise AccessDenied("Signature expired: the request's X-Amz-Date is more than 15 "
                           "minutes from the server's time", "InvalidSignatureException")
    key = signing_key(secret, auth.date, auth.region, auth.service)
    for canonical in canonical_requests(method, target, headers, body, auth):
        expected = hmac.new(key, string_to_sign(canonical, amz_date, auth).encode(),
                            hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, auth.signature):
            return
    raise AccessDenied("The request signature we calculated does not match the signature "
                       "you provided.", "InvalidSignatureException")


# --- IAM policy evaluation ----------------------------------------------------------------

def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str, *, case_sensitive: bool) -> bool:
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(condition: dict[str, Any], context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, expected in tests.items():
            value = context.get(key)
            if value is None:
                return False
            if operator == "StringEquals":
                ok = any(value == e for e in _as_list(expected))
            elif operator == "StringLike":
                ok = any(_matches(e, value, case_sensitive=True) for e in _as_list(expected))
            else:
                return False  # an operator this evaluator does not know never matches
            if not ok:
                return False
    return True


def statement_effect(policy: dict[str, Any], action: str, resource: str,
                     context: dict[str, str]) -> str | None:
    """'Deny' if a statement denies, else 'Allow' if one allows, else None."""
    decision = None
    for statement in _as_list(policy.get("Statement", [])):
        if "Action" not in statement or "Resource" not in statement:
            continue  # NotAction / NotResource are not used by trainship: no match
        if not any(_matches(a, action, case_sensitive=False)
                   for a in _as_list(statement["Action"])):
            continue
        if not any(_matches(r, resource, case_sensitive=True)
                   for r in _as_list(statement["Resource"])):
            continue
        if not _condition_holds(statement.get("Condition", {}), context):
            continue
        if statement.get("Effect") == "Deny":
            return "Deny"
        decision = "Allow"
    return decision


def is_allowed(policies: Iterable[dict[str, Any]], action: str, resource: str,
               context: dict[str, str] | None = None) -> bool:
    """IAM semantics for a session: every policy (role's, session's) must allow, none deny."""
    effects = [statement_effect(p, action, resource, context or {}) for p in policies]
    return bool(effects) and all(e == "Allow" for e in effects)
