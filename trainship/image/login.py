"""Registry login: a builder logs in to ECR with the build role's credentials."""

from __future__ import annotations

import base64
import re
import subprocess

ECR_HOST = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


def ecr_login(builder: str, registry: str) -> None:
    """``<builder> login`` to ``registry`` when it is an ECR registry (boto3's
    GetAuthorizationToken); any other registry needs none."""
    match = ECR_HOST.match(registry)
    if not match:
        return
    # boto3 is only installed where the image is pushed to ECR (the [aws] extra)
    import boto3

    data = boto3.client("ecr", region_name=match.group(2)).get_authorization_token(
        registryIds=[match.group(1)])["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    subprocess.run([builder, "login", "--username", user, "--password-stdin", registry],
                   input=password, text=True, check=True, capture_output=True)
