"""What the user's training script may do on AWS: the role it gets and its session policy.

The training runner (build role) assumes the script role with a session policy scoped
to one deployment and serves the session's credentials to the script through a loopback
container-credentials endpoint; infra/ grants the role no more than MLFLOW_SCRIPT_ACTIONS
and the artifact store (role_policy). The effective permissions of the script are the
intersection of the role's policy and the session policy.

Action names: Service Authorization Reference, "Actions, resources, and condition keys
for Amazon SageMaker with MLflow" (service prefix sagemaker-mlflow). Every action there
takes the mlflow-tracking-server resource only: IAM cannot scope a call to one run or
experiment, so these actions reach the whole tracking server (docs/reliability.md).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

# The runner's variables for the script's session: read by config.TrainingSettings, named
# here too for the local stack's train project, which sets them.
from trainship.config import KMS_KEY_ENV as KMS_KEY_ENV
from trainship.config import PROXIED_ARTIFACTS_BUCKET_ENV as PROXIED_ARTIFACTS_BUCKET_ENV
from trainship.config import SCRIPT_ROLE_ENV as SCRIPT_ROLE_ENV
from trainship.config import TRACKING_SERVER_ARN_ENV as TRACKING_SERVER_ARN_ENV
from trainship.quick_http import QuickHandler

# What `mlflow.start_run()` (attaching to MLFLOW_RUN_ID), metric/param/tag logging and
# MLflow 3 `log_model` (a LoggedModel: create, log params/tags, upload, finalize, link
# to the run as an output) call. The reference lists no CreateLoggedModel action:
# MLflow's POST /logged-models is authorised as LogModel. No registry writes
# (CreateRegisteredModel, CreateModelVersion, aliases), no Delete*, no CreateRun /
# CreateExperiment (the runner creates both before the script starts).
MLFLOW_SCRIPT_ACTIONS: tuple[str, ...] = tuple(f"sagemaker-mlflow:{name}" for name in (
    "GetExperiment",
    "GetExperimentByName",
    "GetRun",
    "UpdateRun",
    "LogMetric",
    "LogParam",
    "LogBatch",
    "LogInputs",
    "LogOutputs",
    "SetTag",
    "GetMetricHistory",
    "ListArtifacts",
    "LogModel",
    "GetLoggedModel",
    "FinalizeLoggedModel",
    "SetLoggedModelTags",
    "LogLoggedModelParams",
    "ListLoggedModelArtifacts",
))
# Objects: upload (multipart uploads are authorised as s3:PutObject, aborting one as
# s3:AbortMultipartUpload) and read back; no s3:DeleteObject.
S3_OBJECT_ACTIONS: tuple[str, ...] = ("s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload")
# SSE-KMS: PutObject needs kms:GenerateDataKey, GetObject kms:Decrypt (Amazon S3 user
# guide, "Using server-side encryption with AWS KMS keys", permissions).
KMS_ACTIONS: tuple[str, ...] = ("kms:GenerateDataKey", "kms:Decrypt")
# Role chaining (the build role assuming the script role) caps a session at one hour:
# IAM user guide, "Methods to assume a role" / STS AssumeRole DurationSeconds ("if you
# assume a role using role chaining and provide a DurationSeconds parameter value greater
# than one hour, the operation fails"). Scripts may run longer, hence the refresh.
SESSION_SECONDS = 3600
# Serve a session only while it has this much life left; botocore refreshes container
# credentials 15 minutes (advisory) / 10 minutes (mandatory) before they expire.
REFRESH_MARGIN = dt.timedelta(minutes=20)
# STS: a session policy's plaintext may not exceed 2,048 characters (AssumeRole, Policy).
SESSION_POLICY_MAX_CHARS = 2048


class ArtifactLocationUnsupported(ValueError):
    """An MLflow artifact location the script's session policy cannot name."""


@dataclass(frozen=True)
class S3Prefix:
    bucket: str
    key_prefix: str  # ends with "/"

    def object_arn(self, partition: str) -> str:
        return f"arn:{partition}:s3:::{self.bucket}/{self.key_prefix}*"

    def bucket_arn(self, partition: str) -> str:
        return f"arn:{partition}:s3:::{self.bucket}"


def s3_prefix(uri: str, proxied_bucket: str | None = None) -> S3Prefix:
    """The bucket and key prefix an artifact URI (s3:// or mlflow-artifacts:) names."""
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        bucket, key = parsed.netloc, parsed.path.lstrip("/")
    elif parsed.scheme == "mlflow-artifacts" and proxied_bucket:
        bucket, key = proxied_bucket, parsed.path.lstrip("/")
    else:
        raise ArtifactLocationUnsupported(
            f"cannot scope the script's credentials to artifact location {uri!r}")
    if not bucket:
        raise ArtifactLocationUnsupported(f"no bucket in artifact location {uri!r}")
    return S3Prefix(bucket, key.rstrip("/") + "/" if key.strip("/") else "")


def run_artifact_prefixes(experiment_artifact_location: str, run_id: str,
                          proxied_bucket: str | None = None) -> list[S3Prefix]:
    """Where a run's script writes: its run's artifacts and the experiment's LoggedModels.

    MLflow puts a run's artifacts under <experiment artifact_location>/<run_id>/ and an
    MLflow 3 LoggedModel's under <experiment artifact_location>/models/<model_id>/; the
    model id does not exist before the script logs it, so the experiment's models/
    prefix is the narrowest grant that lets log_model work.
    """
    base = experiment_artifact_location.rstrip("/")
    return [s3_prefix(f"{base}/{run_id}/", proxied_bucket),
            s3_prefix(f"{base}/models/", proxied_bucket)]


def partition_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[1] if len(parts) > 2 and parts[0] == "arn" and parts[1] else "aws"


def session_policy(*, tracking_server_arn: str, prefixes: Iterable[S3Prefix],
                   kms_key_arn: str | None = None) -> dict[str, Any]:
    """The session policy for one deployment's script (AWS and the local gate alike)."""
    partition = partition_of(tracking_server_arn)
    prefixes = list(prefixes)
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": list(MLFLOW_SCRIPT_ACTIONS),
         "Resource": tracking_server_arn},
        {"Effect": "Allow", "Action": list(S3_OBJECT_ACTIONS),
         "Resource": [p.object_arn(partition) for p in prefixes]},
    ]
    for bucket in sorted({p.bucket for p in prefixes}):
        statements.append({
            "Effect": "Allow", "Action": "s3:ListBucket",
            "Resource": f"arn:{partition}:s3:::{bucket}",
            "Condition": {"StringLike": {"s3:prefix": [
                f"{p.key_prefix}*" for p in prefixes if p.bucket == bucket]}}})
    if kms_key_arn:
        statements.append({"Effect": "Allow", "Action": list(KMS_ACTIONS),
                           "Resource": kms_key_arn})
    return {"Version": "2012-10-17", "Statement": statements}


def role_policy(*, tracking_server_arn: str, artifact_bucket_arns: Iterable[str],
                kms_key_arn: str | None = None) -> dict[str, Any]:
    """The script role's own policy: the ceiling every session policy narrows."""
    buckets = list(artifact_bucket_arns)
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": list(MLFLOW_SCRIPT_ACTIONS),
         "Resource": tracking_server_arn},
        {"Effect": "Allow", "Action": list(S3_OBJECT_ACTIONS),
         "Resource": [f"{arn}/*" for arn in buckets]},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": buckets},
    ]
    if kms_key_arn:
        statements.append({"Effect": "Allow", "Action": list(KMS_ACTIONS),
                           "Resource": kms_key_arn})
    return {"Version": "2012-10-17", "Statement": statements}


def packed(policy: dict[str, Any]) -> str:
    text = json.dumps(policy, separators=(",", ":"))
    if len(text) > SESSION_POLICY_MAX_CHARS:
        raise ValueError(f"the session policy has {len(text)} characters; STS allows "
                         f"{SESSION_POLICY_MAX_CHARS}")
    return text


# --- the script's session, served to it --------------------------------------------------

@dataclass(frozen=True)
class SessionCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: dt.datetime  # timezone-aware

    def container_document(self) -> dict[str, str]:
        """The JSON a container credentials endpoint returns (SDKs and Tools reference
        guide, "Container credential provider")."""
        return {"AccessKeyId": self.access_key_id, "SecretAccessKey": self.secret_access_key,
                "Token": self.session_token,
                "Expiration": self.expiration.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


class ScriptSession:
    """Assumes the script role with the session policy, again whenever the session nears
    its end (role chaining caps each session at an hour)."""

    def __init__(self, sts: Any, role_arn: str, policy: dict[str, Any], session_name: str,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.sts = sts
        self.role_arn = role_arn
        self.policy_text = packed(policy)
        self.session_name = session_name[:64]
        self.now = now
        self._lock = threading.Lock()
        self._current: SessionCredentials | None = None
        self.assumed = 0

    def credentials(self) -> SessionCredentials:
        with self._lock:
            current = self._current
            if current is None or current.expiration - self.now() < REFRESH_MARGIN:
                response = self.sts.assume_role(
                    RoleArn=self.role_arn, RoleSessionName=self.session_name,
                    Policy=self.policy_text, DurationSeconds=SESSION_SECONDS)
                raw = response["Credentials"]
                expiration = raw["Expiration"]
                if isinstance(expiration, str):
                    expiration = dt.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
                if expiration.tzinfo is None:
                    expiration = expiration.replace(tzinfo=dt.UTC)
                current = SessionCredentials(raw["AccessKeyId"], raw["SecretAccessKey"],
                                             raw["SessionToken"], expiration)
                self._current = current
                self.assumed += 1
            return current


class CredentialsEndpoint:
    """A loopback container-credentials endpoint serving one ScriptSession.

    botocore accepts AWS_CONTAINER_CREDENTIALS_FULL_URI over http only for loopback
    addresses (and the ECS/EKS agent addresses); it sends AWS_CONTAINER_AUTHORIZATION_TOKEN
    as the Authorization header, which this endpoint requires.
    """

    def __init__(self, session: ScriptSession) -> None:
        self.session = session
        self.token = secrets.token_urlsafe(32)
        self.path = "/" + secrets.token_urlsafe(12)
        endpoint = self

        class Handler(QuickHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                supplied = self.headers.get("Authorization", "")
                if self.path != endpoint.path or not hmac.compare_digest(
                        supplied.encode(), endpoint.token.encode()):
                    self._send(403, {"code": "AccessDenied", "message": "not authorized"})
                    return
                try:
                    document = endpoint.session.credentials().container_document()
                except Exception as exc:  # noqa: BLE001 - reported to the SDK as documented
                    self._send(500, {"code": type(exc).__name__, "message": str(exc)})
                    return
                self._send(200, document)

            def _send(self, status: int, body: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"

    def environment(self) -> dict[str, str]:
        return {"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url,
                "AWS_CONTAINER_AUTHORIZATION_TOKEN": self.token}

    def __enter__(self) -> CredentialsEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
