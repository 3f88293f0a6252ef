"""The training script's own credentials: session policy, STS session refresh, endpoint."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.credentials import ContainerProvider
from botocore.stub import Stubber

from trainship import script_access
from trainship.config import TrainingSettings
from trainship.local.aws_auth import is_allowed
from trainship.script_access import (
    MLFLOW_SCRIPT_ACTIONS,
    CredentialsEndpoint,
    ScriptSession,
    run_artifact_prefixes,
    session_policy,
)

SERVER = "arn:aws:sagemaker:eu-west-1:111122223333:mlflow-tracking-server/trainship"
LOCATION = "s3://mlflow-artifacts-bucket/experiments/7"
RUN = "0123456789abcdef0123456789abcdef"
KMS = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def policy(kms: str | None = None) -> dict[str, Any]:
    return session_policy(tracking_server_arn=SERVER,
                          prefixes=run_artifact_prefixes(LOCATION, RUN), kms_key_arn=kms)


def obj(key: str) -> str:
    return f"arn:aws:s3:::mlflow-artifacts-bucket/{key}"


def test_actions_cover_logging_and_exclude_registry_writes_and_deletes() -> None:
    names = {a.split(":", 1)[1] for a in MLFLOW_SCRIPT_ACTIONS}
    assert {"GetRun", "UpdateRun", "LogBatch", "LogMetric", "LogModel", "FinalizeLoggedModel",
            "LogOutputs", "SetLoggedModelTags"} <= names
    assert not {n for n in names if n.startswith(("Delete", "CreateRegistered",
                                                  "CreateModelVersion", "SetRegistered",
                                                  "Rename", "Transition"))}
    assert all(a.startswith("sagemaker-mlflow:") for a in MLFLOW_SCRIPT_ACTIONS)


def test_session_policy_allows_logging_to_its_run_and_models_only() -> None:
    doc = policy()
    assert is_allowed([doc], "sagemaker-mlflow:LogBatch", SERVER)
    assert is_allowed([doc], "sagemaker-mlflow:LogModel", SERVER)
    assert is_allowed([doc], "s3:PutObject", obj(f"experiments/7/{RUN}/artifacts/model.pkl"))
    assert is_allowed([doc], "s3:PutObject", obj("experiments/7/models/m-1/artifacts/MLmodel"))
    assert is_allowed([doc], "s3:GetObject", obj(f"experiments/7/{RUN}/artifacts/x"))
    assert is_allowed([doc], "s3:ListBucket", "arn:aws:s3:::mlflow-artifacts-bucket",
                      {"s3:prefix": f"experiments/7/{RUN}/artifacts/"})
    # another run's artifacts, another experiment, the staging bucket, deletes, registry
    assert not is_allowed([doc], "s3:PutObject", obj("experiments/7/fedcba/artifacts/x"))
    assert not is_allowed([doc], "s3:PutObject", obj("experiments/8/models/m-1/x"))
    assert not is_allowed([doc], "s3:ListBucket", "arn:aws:s3:::mlflow-artifacts-bucket",
                          {"s3:prefix": "experiments/7/"})
    assert not is_allowed([doc], "s3:GetObject", "arn:aws:s3:::staging/scripts/d-1/error.json")
    assert not is_allowed([doc], "s3:DeleteObject", obj(f"experiments/7/{RUN}/artifacts/x"))
    assert not is_allowed([doc], "sagemaker-mlflow:CreateRegisteredModel", SERVER)
    assert not is_allowed([doc], "sagemaker-mlflow:CreateModelVersion", SERVER)
    assert not is_allowed([doc], "sagemaker-mlflow:DeleteRun", SERVER)
    assert not is_allowed([doc], "sagemaker-mlflow:LogBatch", SERVER.replace("trainship",
                                                                             "other"))
    assert not any("kms:" in json.dumps(s) for s in doc["Statement"])


def test_session_policy_kms_and_size() -> None:
    doc = policy(KMS)
    assert is_allowed([doc], "kms:GenerateDataKey", KMS)
    assert is_allowed([doc], "kms:Decrypt", KMS)
    # S3 bucket names have at most 63 characters; a long artifact root still fits
    long_location = "s3://" + "b" * 63 + "/" + "p" * 80 + "/123456789012345678"
    big = session_policy(tracking_server_arn=SERVER + "x" * 40,
                         prefixes=run_artifact_prefixes(long_location, RUN), kms_key_arn=KMS)
    assert len(script_access.packed(big)) <= script_access.SESSION_POLICY_MAX_CHARS
    absurd = session_policy(tracking_server_arn=SERVER, prefixes=run_artifact_prefixes(
        "s3://b/" + "p" * 400, RUN))
    with pytest.raises(ValueError, match="2048"):
        script_access.packed(absurd)


def test_prefixes_for_proxied_artifacts_and_unsupported_locations() -> None:
    run, models = run_artifact_prefixes("mlflow-artifacts:/3", RUN, "local-bucket")
    assert (run.bucket, run.key_prefix) == ("local-bucket", f"3/{RUN}/")
    assert models.key_prefix == "3/models/"
    with pytest.raises(script_access.ArtifactLocationUnsupported):
        run_artifact_prefixes("mlflow-artifacts:/3", RUN)  # no bucket configured
    with pytest.raises(script_access.ArtifactLocationUnsupported):
        run_artifact_prefixes("file:///tmp/mlruns/3", RUN)


def assume_role_response(key: str, expiration: dt.datetime) -> dict[str, Any]:
    # STS AssumeRole response, as documented (Credentials + AssumedRoleUser)
    return {"Credentials": {"AccessKeyId": key, "SecretAccessKey": "s" * 40,
                            "SessionToken": "token-" + key, "Expiration": expiration},
            "AssumedRoleUser": {"AssumedRoleId": "AROAEXAMPLE:trainship-d1",
                                "Arn": "arn:aws:sts::111122223333:assumed-role/script/x"}}


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def test_session_is_reassumed_before_the_one_hour_chain_limit() -> None:
    sts = boto3.client("sts", region_name="eu-west-1", aws_access_key_id="a",
                       aws_secret_access_key="b")
    clock = Clock()
    doc = policy()
    expected = {"RoleArn": "arn:aws:iam::111122223333:role/script",
                "RoleSessionName": "trainship-d1", "Policy": script_access.packed(doc),
                "DurationSeconds": 3600}
    with Stubber(sts) as stub:
        stub.add_response("assume_role", assume_role_response(
            "ASIAFIRST0000000", clock.now + dt.timedelta(hours=1)), expected)
        stub.add_response("assume_role", assume_role_response(
            "ASIASECOND000000", clock.now + dt.timedelta(hours=1, minutes=41)), expected)
        session = ScriptSession(sts, expected["RoleArn"], doc, "trainship-d1", now=clock)
        assert session.credentials().access_key_id == "ASIAFIRST0000000"
        clock.now += dt.timedelta(minutes=39)  # 21 minutes left: still served
        assert session.credentials().access_key_id == "ASIAFIRST0000000"
        clock.now += dt.timedelta(minutes=2)  # 19 minutes left: a new session
        assert session.credentials().access_key_id == "ASIASECOND000000"
        stub.assert_no_pending_responses()
    assert session.assumed == 2


class FakeSession:
    def __init__(self) -> None:
        self.key = "ASIAONE"

    def credentials(self) -> script_access.SessionCredentials:
        return script_access.SessionCredentials(
            self.key, "secret-" + self.key, "token-" + self.key,
            dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))


def test_endpoint_serves_botocore_and_requires_the_token() -> None:
    fake = FakeSession()
    with CredentialsEndpoint(fake) as endpoint:  # type: ignore[arg-type]
        env = endpoint.environment()
        assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
        creds = ContainerProvider(environ=env).load()
        assert creds is not None
        frozen = creds.get_frozen_credentials()
        assert (frozen.access_key, frozen.token) == ("ASIAONE", "token-ASIAONE")
        fake.key = "ASIATWO"  # the session was re-assumed: the endpoint serves the new one
        assert ContainerProvider(environ=env).load().get_frozen_credentials().access_key \
            == "ASIATWO"
        for headers in ({}, {"Authorization": "wrong"}):
            request = urllib.request.Request(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
                                             headers=headers)
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(request, timeout=5)
            assert exc.value.code == 403


def test_script_environment_has_no_build_credentials_but_its_endpoint() -> None:
    from trainship.training import script_environment

    base = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc",
            "AWS_REGION": "eu-west-1", "PATH": "/usr/bin"}
    env = script_environment(base, tracking_uri=SERVER, run_id=RUN, experiment_name="e",
                             credentials={"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/x",
                                          "AWS_CONTAINER_AUTHORIZATION_TOKEN": "t"})
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" not in env
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == "http://127.0.0.1:1/x"
    assert env["AWS_REGION"] == "eu-west-1"


class FakeMlflow:
    """The two reads the runner makes with its own role: the run and its experiment."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def get_run(self, run_id: str) -> Any:
        return SimpleNamespace(info=SimpleNamespace(experiment_id="7", run_id=run_id))

    def get_experiment(self, experiment_id: str) -> Any:
        return SimpleNamespace(artifact_location=LOCATION)


def runner_settings() -> TrainingSettings:
    """The runner's settings from this environment, bound to SERVER and RUN."""
    return dataclasses.replace(TrainingSettings.from_env(), tracking_uri=SERVER, run_id=RUN)


def stubbed_sts(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Stubber]:
    import mlflow

    sts = boto3.client("sts", region_name="eu-west-1", aws_access_key_id="a",
                       aws_secret_access_key="b")
    monkeypatch.setattr(mlflow, "MlflowClient", FakeMlflow)
    monkeypatch.setattr(boto3, "client", lambda service, **kw: sts)
    monkeypatch.setenv("TRAINSHIP_SCRIPT_ROLE_ARN", "arn:aws:iam::111122223333:role/script")
    monkeypatch.setenv("TRAINSHIP_MLFLOW_ARTIFACT_KMS_KEY_ARN", KMS)
    return sts, Stubber(sts)


def test_runner_scopes_the_session_to_the_run_read_from_mlflow(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from trainship.training import script_credentials

    _, stub = stubbed_sts(monkeypatch)
    expected = {"RoleArn": "arn:aws:iam::111122223333:role/script",
                "RoleSessionName": "trainship-d-42", "Policy": script_access.packed(policy(KMS)),
                "DurationSeconds": 3600}
    stub.add_response("assume_role", assume_role_response(
        "ASIAFIRST0000000", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)), expected)
    with stub:
        endpoint = script_credentials(runner_settings(), "d-42")
    assert endpoint is not None
    assert endpoint.session.credentials().access_key_id == "ASIAFIRST0000000"


def test_runner_reports_a_refused_assume_role_as_a_build_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from trainship.errors import TrainingBuildFailed
    from trainship.training import script_credentials

    _, stub = stubbed_sts(monkeypatch)
    stub.add_client_error("assume_role", "AccessDenied", "User: build is not authorized to "
                          "perform: sts:AssumeRole", http_status_code=403)
    with stub, pytest.raises(TrainingBuildFailed, match="could not assume") as exc:
        script_credentials(runner_settings(), "d-42")
    assert "AccessDenied" in exc.value.details


def test_no_script_role_means_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainship.training import script_credentials

    monkeypatch.delenv("TRAINSHIP_SCRIPT_ROLE_ARN", raising=False)
    assert script_credentials(runner_settings(), "d-42") is None
