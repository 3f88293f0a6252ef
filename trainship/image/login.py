"""Registry login: a builder logs in to ECR with the build role's credentials."""

from __future__ import annotations

import base64
import subprocess

from trainship.names import ECR_HOST


def ecr_login(builder: str, registry: str) -> None:
    """``<builder> login`` to ``registry`` when it is an ECR registry (boto3's
    GetAuthorizationToken); any other registry needs none."""
    match = ECR_HOST.match(registry)
    if not match:
        return
    # boto3 is only installed where the image is pushed to ECR (the [aws] extra)
    import boto3

    data = boto3.client("ecr", region_name=match["region"]).get_authorization_token(
        registryIds=[match["account"]])["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    subprocess.run([builder, "login", "--username", user, "--password-stdin", registry],
                   input=password, text=True, check=True, capture_output=True)
