"""The local MLflow server's gate: SigV4 authentication and IAM authorisation, as on AWS.

SageMaker managed MLflow authorises every call with SigV4 against the caller's IAM
permissions (actions ``sagemaker-mlflow:*`` on the tracking server), and artifacts go to
S3 under the caller's credentials. The local stack's MLflow is a plain server, so this
small threaded reverse proxy stands in front of it (MLflow itself listens on an internal
port) and does what AWS does:

* Authentication: AWS Signature Version 4 (``Authorization: AWS4-HMAC-SHA256 ...``,
  ``X-Amz-Date``, ``X-Amz-Security-Token``), recomputed (trainship.local.aws_auth; IAM
  user guide, "Create a signed AWS API request"). MLflow clients sign natively with
  ``MLFLOW_TRACKING_AWS_SIGV4=true`` (requests-auth-aws-sigv4, service ``execute-api``).
* Principals: the stack's own key (Lambdas, builds, tests) has full access; a session
  made by STS AssumeRole against the stack's moto server (the training script's) is
  looked up in moto's in-process STS backend: its secret, token, expiry and session
  policy. Its permissions are the role's policy intersected with the session policy.
* Authorisation: each MLflow REST path is mapped to its ``sagemaker-mlflow`` action on
  the tracking server ARN, each proxied-artifact path to ``s3:GetObject`` /
  ``s3:PutObject`` / ``s3:ListBucket`` on a local bucket's ARN; policies are evaluated
  with IAM semantics (explicit Deny wins, otherwise an Allow is needed, wildcards).
* The UI: unsigned requests are the anonymous viewer, allowed only read actions, and only
  through the UI's own paths (``/``, static files, ``/ajax-api/``, ``/graphql``,
  ``/get-artifact``); unsigned calls to ``/api/`` are refused, as AWS refuses them.

Failures are 403s with an MLflow-shaped error body (``PERMISSION_DENIED``), so the
MLflow client raises them as an ``MlflowException``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import http.client
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from trainship.local.aws_auth import (
    ALGORITHM,
    AccessDenied,
    is_allowed,
    parse_authorization,
    verify_signature,
)
from trainship.quick_http import QuickHandler

SERVICES = ("execute-api", "sagemaker-mlflow")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host", "content-length"}




# --- what a request does ------------------------------------------------------------------

MLFLOW_ROUTES: dict[tuple[str, str], str] = {
    ("POST", "experiments/create"): "CreateExperiment",
    ("GET", "experiments/get"): "GetExperiment",
    ("GET", "experiments/get-by-name"): "GetExperimentByName",
    ("GET", "experiments/search"): "SearchExperiments",
    ("POST", "experiments/search"): "SearchExperiments",
    ("POST", "experiments/delete"): "DeleteExperiment",
    ("POST", "experiments/restore"): "RestoreExperiment",
    ("POST", "experiments/update"): "UpdateExperiment",
    ("POST", "experiments/set-experiment-tag"): "SetExperimentTag",
    ("POST", "runs/create"): "CreateRun",
    ("GET", "runs/get"): "GetRun",
    ("POST", "runs/update"): "UpdateRun",
    ("POST", "runs/delete"): "DeleteRun",
    ("POST", "runs/restore"): "RestoreRun",
    ("POST", "runs/search"): "SearchRuns",
    ("POST", "runs/log-metric"): "LogMetric",
    ("POST", "runs/log-parameter"): "LogParam",
    ("POST", "runs/log-batch"): "LogBatch",
    ("POST", "runs/log-model"): "LogModel",
    ("POST", "runs/log-inputs"): "LogInputs",
    ("POST", "runs/outputs"): "LogOutputs",
    ("POST", "runs/set-tag"): "SetTag",
    ("POST", "runs/delete-tag"): "DeleteTag",
    ("GET", "metrics/get-history"): "GetMetricHistory",
    ("GET", "metrics/get-history-bulk-interval"): "GetMetricHistory",
    ("GET", "artifacts/list"): "ListArtifacts",
    ("POST", "registered-models/create"): "CreateRegisteredModel",
    ("GET", "registered-models/get"): "GetRegisteredModel",
    ("GET", "registered-models/search"): "SearchRegisteredModels",
    ("POST", "registered-models/rename"): "RenameRegisteredModel",
    ("PATCH", "registered-models/update"): "UpdateRegisteredModel",
    ("DELETE", "registered-models/delete"): "DeleteRegisteredModel",
    ("POST", "registered-models/set-tag"): "SetRegisteredModelTag",
    ("DELETE", "registered-models/delete-tag"): "DeleteRegisteredModelTag",
    ("GET", "registered-models/get-latest-versions"): "GetLatestModelVersions",
    ("POST", "registered-models/get-latest-versions"): "GetLatestModelVersions",
    ("POST", "registered-models/alias"): "SetRegisteredModelAlias",
    ("DELETE", "registered-models/alias"): "DeleteRegisteredModelAlias",
    ("GET", "registered-models/alias"): "GetModelVersionByAlias",
    ("POST", "model-versions/create"): "CreateModelVersion",
    ("GET", "model-versions/get"): "GetModelVersion",
    ("PATCH", "model-versions/update"): "UpdateModelVersion",
    ("DELETE", "model-versions/delete"): "DeleteModelVersion",
    ("GET", "model-versions/search"): "SearchModelVersions",
    ("POST", "model-versions/set-tag"): "SetModelVersionTag",
    ("DELETE", "model-versions/delete-tag"): "DeleteModelVersionTag",
    ("POST", "model-versions/transition-stage"): "TransitionModelVersionStage",
    ("GET", "model-versions/get-download-uri"): "GetDownloadURIForModelVersionArtifacts",
    # the reference has no CreateLoggedModel: POST /logged-models is LogModel
    ("POST", "logged-models"): "LogModel",
    ("POST", "logged-models/search"): "SearchLoggedModels",
}
LOGGED_MODEL_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"logged-models/[^/]+"), "GetLoggedModel"),
    ("PATCH", re.compile(r"logged-models/[^/]+"), "FinalizeLoggedModel"),
    ("DELETE", re.compile(r"logged-models/[^/]+"), "DeleteLoggedModel"),
    ("PATCH", re.compile(r"logged-models/[^/]+/tags"), "SetLoggedModelTags"),
    ("DELETE", re.compile(r"logged-models/[^/]+/tags/.+"), "DeleteLoggedModelTag"),
    ("POST", re.compile(r"logged-models/[^/]+/params"), "LogLoggedModelParams"),
    ("GET", re.compile(r"logged-models/[^/]+/artifacts/directories"),
     "ListLoggedModelArtifacts"),
]
_MLFLOW_API = re.compile(r"^/(ajax-api|api)/[23]\.0/mlflow/(.*)$")
_ARTIFACTS_API = re.compile(r"^/(ajax-api|api)/2\.0/mlflow-artifacts/(artifacts|mpu/[a-z]+)/?(.*)$")
UI_PREFIXES = ("/ajax-api/", "/graphql", "/get-artifact", "/model-versions/get-artifact")
READ_ONLY = re.compile(r"^(sagemaker-mlflow:(Get|Search|List|AccessUI)|s3:(GetObject|ListBucket)$)")


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)


def classify(method: str, target: str, server_arn: str, bucket: str) -> Request:
    """The IAM action, resource and condition keys of one HTTP request to MLflow."""
    url = urlsplit(target)
    path = url.path
    match = _ARTIFACTS_API.match(path)
    if match:
        kind, key = match.group(2), unquote(match.group(3))
        partition = server_arn.split(":")[1] if server_arn.count(":") > 1 else "aws"
        if kind == "artifacts" and not key and method == "GET":
            prefix = dict(parse_qsl(url.query)).get("path", "")
            return Request("s3:ListBucket", f"arn:{partition}:s3:::{bucket}",
                           {"s3:prefix": prefix.strip("/") + "/" if prefix.strip("/") else ""})
        action = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject",
                  "DELETE": "s3:DeleteObject", "POST": "s3:PutObject"}.get(method, "s3:Unknown")
        if kind == "mpu/abort":
            action = "s3:AbortMultipartUpload"
        return Request(action, f"arn:{partition}:s3:::{bucket}/{key}")
    match = _MLFLOW_API.match(path)
    if match:
        route = match.group(2).strip("/")
        name = MLFLOW_ROUTES.get((method, route))
        if name is None:
            name = next((n for m, pattern, n in LOGGED_MODEL_ROUTES
                         if m == method and pattern.fullmatch(route)), None)
        if name is None:  # traces, datasets, webhooks, gateway...: none of trainship's
            name = "Unmapped:" + route
        return Request(f"sagemaker-mlflow:{name}", server_arn)
    if method in ("GET", "HEAD", "POST") and (path == "/graphql" or path.endswith("get-artifact")):
        return Request("sagemaker-mlflow:GetRun", server_arn)
    if method in ("GET", "HEAD"):
        return Request("sagemaker-mlflow:AccessUI", server_arn)
    return Request("sagemaker-mlflow:Unmapped:" + path, server_arn)


# --- principals ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Principal:
    arn: str
    secret: str
    session_token: str | None = None
    expiration: dt.datetime | None = None
    policies: tuple[dict[str, Any], ...] = ()
    full_access: bool = False


def moto_session(access_key: str) -> Any | None:
    """The STS session (moto AssumedRole) of an access key, from moto's in-process backend."""
    from moto.sts.models import sts_backends

    for account in list(sts_backends.values()):
        for backend in list(account.values()):
            role = backend.get_assumed_role_from_access_key(access_key)
            if role is not None:
                return role
    return None


class Principals:
    """The stack's own key, and the STS sessions moto has handed out."""

    def __init__(self, stack_key: str, stack_secret: str,
                 role_policies: dict[str, dict[str, Any]],
                 sessions: Callable[[str], Any | None] = moto_session) -> None:
        self.stack_key = stack_key
        self.stack_secret = stack_secret
        self.role_policies = role_policies
        self.sessions = sessions

    def find(self, access_key: str) -> Principal | None:
        if access_key == self.stack_key:
            return Principal("arn:aws:iam::000000000000:user/trainship-local-stack",
                             self.stack_secret, full_access=True)
        role = self.sessions(access_key)
        if role is None:
            return None
        policies = [self.role_policies.get(role.role_arn, {"Statement": []})]
        if role.policy:
            policies.append(json.loads(role.policy))
        expiration = role.expiration
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=dt.UTC)
        return Principal(role.arn, role.secret_access_key, role.session_token, expiration,
                         tuple(policies))


# --- the gate -------------------------------------------------------------------------------

@dataclass
class Gate:
    principals: Principals
    server_arn: str
    bucket: str
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    def authorize(self, method: str, target: str, headers: dict[str, str],
                  body: bytes) -> str:
        """The caller's ARN if the request may pass; AccessDenied otherwise."""
        request = classify(method, target, self.server_arn, self.bucket)
        header = headers.get("authorization", "")
        if not header.startswith(ALGORITHM):
            path = urlsplit(target).path
            if (not path.startswith("/api/") and READ_ONLY.match(request.action)
                    and (request.action.endswith("AccessUI") or path.startswith(UI_PREFIXES))):
                return "anonymous"
            raise AccessDenied("Missing Authentication Token: sign requests with SigV4 "
                               "(MLFLOW_TRACKING_AWS_SIGV4=true)", "MissingAuthenticationToken")
        auth = parse_authorization(header)
        if auth.service not in SERVICES:
            raise AccessDenied(f"Credential should be scoped to a valid service: {auth.service}",
                               "InvalidSignatureException")
        principal = self.principals.find(auth.access_key)
        if principal is None:
            raise AccessDenied("The security token included in the request is invalid.",
                               "UnrecognizedClientException")
        now = self.now()
        verify_signature(method, target, headers, body, principal.secret, auth, now)
        if principal.session_token is not None and not hmac.compare_digest(
                headers.get("x-amz-security-token", ""), principal.session_token):
            raise AccessDenied("The security token included in the request is invalid.",
                               "UnrecognizedClientException")
        if principal.expiration is not None and now >= principal.expiration:
            raise AccessDenied("The security token included in the request is expired",
                               "ExpiredTokenException")
        if principal.full_access or is_allowed(principal.policies, request.action,
                                               request.resource, request.context):
            return principal.arn
        raise AccessDenied(f"User: {principal.arn} is not authorized to perform: "
                           f"{request.action} on resource: {request.resource} because no "
                           "session policy allows the action")


class GateServer:
    """The reverse proxy: the gate's decision, then MLflow on its internal port."""

    def __init__(self, gate: Gate, host: str, port: int, upstream_port: int,
                 log: Callable[[str], None] | None = None) -> None:
        self.gate = gate
        self.upstream_port = upstream_port
        self.log = log
        owner = self

        class Handler(QuickHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    who = owner.gate.authorize(self.command, self.path, headers, body)
                except AccessDenied as exc:
                    if owner.log:
                        owner.log(f"gate: 403 {self.command} {self.path}: {exc.code}: {exc}")
                    self._deny(exc)
                    return
                if owner.log and who != "anonymous":
                    owner.log(f"gate: {who} {self.command} {self.path}")
                self._forward(body)

            def _deny(self, exc: AccessDenied) -> None:
                data = json.dumps({"error_code": "PERMISSION_DENIED",
                                   "message": f"{exc.code}: {exc}"}).encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-ErrorType", exc.code)
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, body: bytes) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", owner.upstream_port,
                                                  timeout=600)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in HOP_BY_HOP and k.lower() != "authorization"}
                    headers["Host"] = f"127.0.0.1:{owner.upstream_port}"
                    headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    self.send_response(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() not in HOP_BY_HOP:
                            self.send_header(name, value)
                    data = response.read()
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except OSError as exc:
                    data = json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE",
                                       "message": f"MLflow is not answering: {exc}"}).encode()
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
