"""How the kubernetes driver authenticates to EKS: the token aws-iam-authenticator makes."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlparse

from trainship.cluster.kube_api import eks_token


def test_eks_token_is_a_presigned_get_caller_identity() -> None:
    import botocore.session

    session = botocore.session.get_session()
    session.set_credentials("AKIDEXAMPLE", "secret")
    token = eks_token("prod", "eu-west-1", session=_Boto3Like(session))
    assert token.startswith("k8s-aws-v1.")
    encoded = token.removeprefix("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    assert parsed.netloc == "sts.eu-west-1.amazonaws.com"
    assert query["Action"] == ["GetCallerIdentity"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Expires"] == ["60"]
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")


def test_eks_token_outside_the_aws_partition_signs_for_that_partitions_sts() -> None:
    import botocore.session

    session = botocore.session.get_session()
    session.set_credentials("AKIDEXAMPLE", "secret")
    token = eks_token("prod", "cn-north-1", session=_Boto3Like(session))
    encoded = token.removeprefix("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    assert urlparse(url).netloc == "sts.cn-north-1.amazonaws.com.cn"


class _Boto3Like:
    """What eks_token needs of a boto3 Session, over a botocore session."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.events = session.get_component("event_emitter")

    def client(self, name: str, region_name: str) -> Any:
        return self.session.create_client(name, region_name=region_name)

    def get_credentials(self) -> Any:
        return self.session.get_credentials()
