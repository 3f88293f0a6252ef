"""Staged objects on S3, against botocore stubs shaped as S3 answers.

Issue 10 item 5: without s3:ListBucket, GetObject on a missing key is 403 AccessDenied,
not 404 NoSuchKey (Amazon S3 API Reference, GetObject, "Permissions"); RecordFailure must
not crash on it. Item 11: staged objects are encrypted with the stack's key, not aws/s3.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from trainship import staging, steps

URI = "s3://trainship-staging/scripts/d-1/error.json"
KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client("s3", region_name="eu-west-1", aws_access_key_id="a",
                          aws_secret_access_key="s")
    monkeypatch.setattr(staging, "_s3_client", lambda: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


GET = {"Bucket": "trainship-staging", "Key": "scripts/d-1/error.json"}


def test_missing_key_with_list_bucket_is_404_no_such_key(s3: Stubber) -> None:
    s3.add_client_error("get_object", service_error_code="NoSuchKey",
                        service_message="The specified key does not exist.",
                        http_status_code=404, expected_params=GET)
    assert staging.get_text(URI) is None


def test_missing_key_without_list_bucket_is_403_and_read_as_missing(
        s3: Stubber, caplog: pytest.LogCaptureFixture) -> None:
    s3.add_client_error("get_object", service_error_code="AccessDenied",
                        service_message="Access Denied", http_status_code=403,
                        expected_params=GET)
    with caplog.at_level(logging.WARNING, logger="trainship.staging"):
        assert staging.get_text(URI) is None
    assert any("403" in r.getMessage() and URI in r.getMessage() for r in caplog.records)


def test_other_errors_are_not_hidden(s3: Stubber) -> None:
    s3.add_client_error("get_object", service_error_code="SlowDown",
                        service_message="Please reduce your request rate.",
                        http_status_code=503, expected_params=GET)
    with pytest.raises(ClientError):
        staging.get_text(URI)


def test_existing_object_is_read(s3: Stubber) -> None:
    body = b'{"error": "ScriptTimeout"}'
    s3.add_response("get_object", {"Body": StreamingBody(io.BytesIO(body), len(body))},
                    expected_params=GET)
    assert staging.get_text(URI) == body.decode()


def build_failure(script_uri: str) -> steps.FailureContext:
    build = {"Id": "trainship-train:abc", "BuildStatus": "FAILED",
             "Logs": {"GroupName": "/aws/codebuild/trainship-train"},
             "Environment": {"EnvironmentVariables": [
                 {"Name": "TRAINSHIP_STEP", "Value": "TrainModel", "Type": "PLAINTEXT"}]}}
    return steps.FailureContext.model_validate({
        "script_uri": script_uri,
        "failure": {"Error": "States.TaskFailed", "Cause": json.dumps({"Build": build})}})


def test_record_failure_survives_a_403_for_the_missing_error_document(s3: Stubber) -> None:
    """A build that died before staging its error document, read by a role without
    s3:ListBucket: RecordFailure still reports the build failure."""
    s3.add_client_error("get_object", service_error_code="AccessDenied",
                        service_message="Access Denied", http_status_code=403,
                        expected_params=GET)

    doc = steps.failure_document(build_failure("s3://trainship-staging/scripts/d-1/train.py"))
    assert doc.error == "TrainingBuildFailed"
    assert "trainship-train:abc" in doc.message


PUT = {"Bucket": "trainship-staging", "Key": "scripts/d-1/job.json", "Body": b"{}",
       "ServerSideEncryption": "aws:kms"}


def test_staged_objects_use_the_stack_key(s3: Stubber, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setenv("TRAINSHIP_STAGING_KMS_KEY_ID", KEY_ARN)
    s3.add_response("put_object", {}, expected_params={**PUT, "SSEKMSKeyId": KEY_ARN})
    staging.put_text("s3://trainship-staging/scripts/d-1/job.json", "{}")


def test_without_a_key_s3_chooses(s3: Stubber, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINSHIP_STAGING_KMS_KEY_ID", raising=False)
    s3.add_response("put_object", {}, expected_params=PUT)
    staging.put_text("s3://trainship-staging/scripts/d-1/job.json", "{}")
