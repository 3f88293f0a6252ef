"""The local MLflow gate: SigV4 as AWS checks it, IAM evaluation, MLflow path mapping."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from requests_auth_aws_sigv4 import AWSSigV4

from trainship.local.aws_auth import AccessDenied, is_allowed
from trainship.local.mlflow_gate import Gate, Principals, classify
from trainship.script_access import role_policy, run_artifact_prefixes, session_policy

SERVER = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/trainship-local"
BUCKET = "local-artifacts"
ROLE = "arn:aws:iam::123456789012:role/script"
RUN = "aaaabbbbccccdddd"
BASE = "http://127.0.0.1:5000"
NOW = dt.datetime.now(dt.UTC)


def session(expiration: dt.datetime | None = None) -> SimpleNamespace:
    # the attributes of moto's sts AssumedRole the gate reads
    policy = session_policy(tracking_server_arn=SERVER,
                            prefixes=run_artifact_prefixes("mlflow-artifacts:/1", RUN, BUCKET))
    return SimpleNamespace(
        role_arn=ROLE, arn="arn:aws:sts::123456789012:assumed-role/script/trainship-d1",
        access_key_id="ASIASCRIPT", secret_access_key="script-secret",
        session_token="script-token", policy=json.dumps(policy),
        expiration=(expiration or NOW + dt.timedelta(hours=1)).replace(tzinfo=None))


def gate(expiration: dt.datetime | None = None) -> Gate:
    sessions = {"ASIASCRIPT": session(expiration)}
    principals = Principals("local", "stack-secret", {ROLE: role_policy(
        tracking_server_arn=SERVER, artifact_bucket_arns=[f"arn:aws:s3:::{BUCKET}"])},
        sessions=sessions.get)
    return Gate(principals, SERVER, BUCKET)


def signed_by_requests(method: str, path: str, body: bytes | None = None, *,
                       key: str = "ASIASCRIPT", secret: str = "script-secret",
                       token: str | None = "script-token",
                       params: dict[str, str] | None = None) -> tuple[str, dict[str, str], bytes]:
    """As MLflow's client signs (MLFLOW_TRACKING_AWS_SIGV4: requests-auth-aws-sigv4)."""
    auth = AWSSigV4("execute-api", region="us-east-1", aws_access_key_id=key,
                    aws_secret_access_key=secret, aws_session_token=token)
    prepared = requests.Request(method, BASE + path, data=body, params=params,
                                auth=auth).prepare()
    target = prepared.path_url
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    raw = prepared.body if isinstance(prepared.body, bytes) else (prepared.body or "").encode()
    return target, headers, raw


def signed_by_botocore(method: str, path: str, body: bytes = b"", *, key: str = "local",
                       secret: str = "stack-secret") -> tuple[str, dict[str, str], bytes]:
    request = AWSRequest(method=method, url=BASE + path, data=body)
    SigV4Auth(Credentials(key, secret), "sagemaker-mlflow", "us-east-1").add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = "127.0.0.1:5000"
    return path, headers, body


def test_signatures_from_both_signers_verify() -> None:
    g = gate()
    assert g.authorize("POST", *signed_by_requests("POST", "/api/2.0/mlflow/runs/log-batch",
                                                   b'{"run_id": "x"}')).endswith("trainship-d1")
    assert g.authorize("GET", *signed_by_requests(
        "GET", "/api/2.0/mlflow/runs/get", params={"run_id": RUN})).endswith("trainship-d1")
    assert g.authorize("POST", *signed_by_botocore(
        "POST", "/api/2.0/mlflow/registered-models/create", b"{}")).endswith("local-stack")
    assert g.authorize("GET", *signed_by_botocore(
        "GET", "/api/2.0/mlflow/runs/get?run_id=x&b=a%20b")).endswith("local-stack")


def test_tampered_body_path_or_token_is_refused() -> None:
    g = gate()
    target, headers, body = signed_by_requests("POST", "/api/2.0/mlflow/runs/log-batch",
                                               b'{"run_id": "mine"}')
    with pytest.raises(AccessDenied) as exc:
        g.authorize("POST", target, headers, b'{"run_id": "other"}')
    assert exc.value.code == "XAmzContentSHA256Mismatch"
    with pytest.raises(AccessDenied, match="signature we calculated"):
        g.authorize("POST", "/api/2.0/mlflow/runs/log-metric", headers, body)
    with pytest.raises(AccessDenied, match="signature we calculated"):  # the token is signed
        g.authorize("POST", target, {**headers, "x-amz-security-token": "forged"}, body)
    target, headers, body = signed_by_botocore("POST", "/api/2.0/mlflow/runs/create", b"{}")
    with pytest.raises(AccessDenied, match="signature we calculated"):
        g.authorize("POST", target, headers, b"[]")


def test_wrong_secret_unknown_key_and_unsigned_are_refused() -> None:
    g = gate()
    with pytest.raises(AccessDenied, match="signature we calculated"):
        g.authorize("POST", *signed_by_requests("POST", "/api/2.0/mlflow/runs/log-batch",
                                                b"{}", secret="guessed"))
    with pytest.raises(AccessDenied, match="signature we calculated"):
        g.authorize("POST", *signed_by_botocore("POST", "/api/2.0/mlflow/runs/create", b"{}",
                                                secret="local"))
    with pytest.raises(AccessDenied, match="security token included in the request is invalid"):
        g.authorize("POST", *signed_by_requests("POST", "/api/2.0/mlflow/runs/log-batch",
                                                b"{}", key="AKIAUNKNOWN"))
    with pytest.raises(AccessDenied) as exc:
        g.authorize("POST", "/api/2.0/mlflow/runs/log-batch", {"host": "127.0.0.1"}, b"{}")
    assert exc.value.code == "MissingAuthenticationToken"


def test_expired_session_and_stale_signature_are_refused() -> None:
    expired = gate(expiration=NOW - dt.timedelta(seconds=1))
    with pytest.raises(AccessDenied) as exc:
        expired.authorize("POST", *signed_by_requests("POST", "/api/2.0/mlflow/runs/log-batch",
                                                      b"{}"))
    assert exc.value.code == "ExpiredTokenException"
    late = gate()
    late.now = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=16)
    with pytest.raises(AccessDenied, match="Signature expired"):
        late.authorize("POST", *signed_by_requests("POST", "/api/2.0/mlflow/runs/log-batch",
                                                   b"{}"))


def test_script_may_log_to_its_run_but_not_register_delete_or_touch_other_runs() -> None:
    g = gate()

    def call(method: str, path: str, body: bytes | None = b"{}") -> str:
        return g.authorize(method, *signed_by_requests(method, path, body))

    for method, path in [("POST", "/api/2.0/mlflow/runs/log-batch"),
                         ("POST", "/api/2.0/mlflow/runs/update"),
                         ("POST", "/api/2.0/mlflow/logged-models"),
                         ("PATCH", "/api/2.0/mlflow/logged-models/m-123"),
                         ("POST", "/api/2.0/mlflow/runs/outputs"),
                         ("PUT", f"/api/2.0/mlflow-artifacts/artifacts/1/{RUN}/artifacts/a.txt"),
                         ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/models/m-123/artifacts/"
                                 "MLmodel")]:
        assert call(method, path).endswith("trainship-d1"), path
    for method, path in [("POST", "/api/2.0/mlflow/registered-models/create"),
                         ("POST", "/api/2.0/mlflow/model-versions/create"),
                         ("POST", "/api/2.0/mlflow/registered-models/alias"),
                         ("POST", "/api/2.0/mlflow/runs/delete"),
                         ("DELETE", "/api/2.0/mlflow/logged-models/m-123"),
                         ("POST", "/api/2.0/mlflow/runs/create"),
                         ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/otherrun/artifacts/a"),
                         ("PUT", "/api/2.0/mlflow-artifacts/artifacts/2/models/m-1/artifacts/x"),
                         ("DELETE", f"/api/2.0/mlflow-artifacts/artifacts/1/{RUN}/artifacts/a"),
                         ("POST", "/api/2.0/mlflow/traces")]:
        with pytest.raises(AccessDenied, match="is not authorized to perform"):
            call(method, path)


def test_the_ui_reads_unsigned_but_cannot_write_and_the_api_needs_a_signature() -> None:
    g = gate()
    host = {"host": "127.0.0.1:5000"}
    assert g.authorize("GET", "/", host, b"") == "anonymous"
    assert g.authorize("GET", "/static-files/main.js", host, b"") == "anonymous"
    assert g.authorize("GET", "/ajax-api/2.0/mlflow/runs/get?run_id=x", host, b"") == "anonymous"
    assert g.authorize("POST", "/ajax-api/2.0/mlflow/runs/search", host, b"{}") == "anonymous"
    for method, path in [("POST", "/ajax-api/2.0/mlflow/runs/delete"),
                         ("POST", "/ajax-api/2.0/mlflow/registered-models/create"),
                         ("GET", "/api/2.0/mlflow/runs/get?run_id=x"),
                         ("PUT", "/ajax-api/2.0/mlflow-artifacts/artifacts/1/x")]:
        with pytest.raises(AccessDenied, match="Missing Authentication Token"):
            g.authorize(method, path, host, b"")


def test_classify_maps_paths_to_actions_and_resources() -> None:
    assert classify("POST", "/api/2.0/mlflow/runs/log-parameter", SERVER, BUCKET).action \
        == "sagemaker-mlflow:LogParam"
    assert classify("GET", "/api/2.0/mlflow/logged-models/m-1/artifacts/directories", SERVER,
                    BUCKET).action == "sagemaker-mlflow:ListLoggedModelArtifacts"
    request = classify("GET", "/api/2.0/mlflow-artifacts/artifacts?path=1%2Fabc", SERVER, BUCKET)
    assert (request.action, request.resource, request.context) == (
        "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "1/abc/"})
    request = classify("GET", "/api/2.0/mlflow-artifacts/artifacts/1/a%20b/x", SERVER, BUCKET)
    assert (request.action, request.resource) == ("s3:GetObject",
                                                  f"arn:aws:s3:::{BUCKET}/1/a b/x")


def test_explicit_deny_wins_and_both_policies_must_allow() -> None:
    allow: dict[str, Any] = {"Statement": [{"Effect": "Allow", "Action": "sagemaker-mlflow:*",
                                            "Resource": "*"}]}
    deny: dict[str, Any] = {"Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "sagemaker-mlflow:Delete*", "Resource": SERVER}]}
    assert is_allowed([allow], "sagemaker-mlflow:logbatch", SERVER)  # actions: no case
    assert not is_allowed([allow, deny], "sagemaker-mlflow:DeleteRun", SERVER)
    assert is_allowed([allow, deny], "sagemaker-mlflow:GetRun", SERVER)
    assert not is_allowed([allow, {"Statement": []}], "sagemaker-mlflow:GetRun", SERVER)
    assert not is_allowed([], "sagemaker-mlflow:GetRun", SERVER)


def test_streamed_upload_bodies_are_signed_after_the_bootstrap_fix(tmp_path: Any) -> None:
    """MLflow uploads an artifact as an open file; the signer can only sign bytes."""
    from trainship.bootstrap import patch_sigv4_file_bodies

    artifact = tmp_path / "model.pkl"
    artifact.write_bytes(b"\x00model bytes" * 100)
    path = f"/api/2.0/mlflow-artifacts/artifacts/1/{RUN}/artifacts/model.pkl"

    def signed_upload() -> tuple[str, dict[str, str], bytes]:
        with open(artifact, "rb") as handle:
            return signed_by_requests("PUT", path, handle)  # type: ignore[arg-type]

    assert patch_sigv4_file_bodies()
    target, headers, body = signed_upload()
    assert body == artifact.read_bytes()
    assert gate().authorize("PUT", target, headers, body).endswith("trainship-d1")
