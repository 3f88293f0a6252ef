"""Where scripts, job documents and error documents are staged: S3 on AWS, a directory
locally."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

# The stack's KMS key (its ARN); staged objects are encrypted with it rather than aws/s3.
KMS_KEY_ENV = "TRAINSHIP_STAGING_KMS_KEY_ID"
# S3's error codes for an object that is not there (GetObject: NoSuchKey; HEAD-style: 404).
MISSING_CODES = ("NoSuchKey", "404", "NotFound")
# What S3 answers instead when the caller may not list the bucket (see get_text).
DENIED_CODES = ("AccessDenied", "403", "Forbidden")


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def error_uri(script_uri: str) -> str:
    """Where a step stages its error document: beside the deployment's script."""
    return script_uri.rsplit("/", 1)[0] + "/error.json"


def _local_path(uri: str) -> Path:
    return Path(uri[len("file://"):]) if uri.startswith("file://") else Path(uri)


def _s3_client() -> Any:
    import boto3

    return boto3.client("s3")


def _bucket_key(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def put_text(uri: str, text: str) -> None:
    if uri.startswith("s3://"):
        bucket, key = _bucket_key(uri)
        # PutObject with ServerSideEncryption=aws:kms and no SSEKMSKeyId encrypts with the
        # AWS managed key aws/s3, not the bucket's key (Amazon S3 API Reference, PutObject:
        # x-amz-server-side-encryption-aws-kms-key-id). Name the stack's key when it is set.
        extra: dict[str, str] = {"ServerSideEncryption": "aws:kms"}
        kms_key = os.environ.get(KMS_KEY_ENV, "")
        if kms_key:
            extra["SSEKMSKeyId"] = kms_key
        _s3_client().put_object(Bucket=bucket, Key=key, Body=text.encode(), **extra)
        return
    path = _local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def get_text(uri: str) -> str | None:
    """The object's text, or None when it does not exist.

    On S3 a missing key is 404 NoSuchKey only for a caller allowed s3:ListBucket on the
    bucket; without it S3 answers 403 AccessDenied for a missing key too (Amazon S3 API
    Reference, GetObject, "Permissions"). So a 403 means "missing or not readable": it is
    logged and read as missing, so a caller such as RecordFailure reports what it knows
    instead of crashing.
    """
    if uri.startswith("s3://"):
        from botocore.exceptions import ClientError

        bucket, key = _bucket_key(uri)
        try:
            body = _s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in MISSING_CODES or status == 404:
                return None
            if code in DENIED_CODES or status == 403:
                logger.warning(
                    "S3 denied reading %s (%s %s): the object is missing (S3 says 403 "
                    "rather than 404 when the caller may not list the bucket) or this "
                    "role may not read it; treated as missing", uri, status, code)
                return None
            raise
        return str(body.read().decode())
    path = _local_path(uri)
    return path.read_text() if path.exists() else None


JOB_URI_ENV = "TRAINSHIP_JOB_URI"


class JobMissing(RuntimeError):
    """The build was started without a readable job document."""


def read_job(environ: Mapping[str, str] | None = None) -> str:
    """The text of the job document a build was started for (the state machine passes its
    URI as the TRAINSHIP_JOB_URI override; the document itself would not fit in one)."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    uri = env.get(JOB_URI_ENV, "")
    if not uri:
        raise JobMissing(f"{JOB_URI_ENV} is not set: this build must be started by the "
                         "state machine, which passes the staged job document's URI")
    text = get_text(uri)
    if text is None:
        raise JobMissing(f"The job document {uri} is missing or not readable")
    return text
