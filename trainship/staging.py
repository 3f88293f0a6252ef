"""Where scripts and error documents are staged: S3 on AWS, a directory locally."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _local_path(uri: str) -> Path:
    return Path(uri[len("file://"):]) if uri.startswith("file://") else Path(uri)


def put_text(uri: str, text: str) -> None:
    if uri.startswith("s3://"):
        import boto3

        parsed = urlparse(uri)
        boto3.client("s3").put_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"),
                                      Body=text.encode(), ServerSideEncryption="aws:kms")
        return
    path = _local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def get_text(uri: str) -> str | None:
    """The object's text, or None when it does not exist."""
    if uri.startswith("s3://"):
        import boto3
        from botocore.exceptions import ClientError

        parsed = urlparse(uri)
        try:
            body = boto3.client("s3").get_object(Bucket=parsed.netloc,
                                                 Key=parsed.path.lstrip("/"))["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        return str(body.read().decode())
    path = _local_path(uri)
    return path.read_text() if path.exists() else None
