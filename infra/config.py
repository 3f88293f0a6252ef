"""Stack configuration from CDK context (cdk.json or `cdk deploy -c key=value`).

Every key has a documented default (docs/deploy-to-aws.md); nothing here calls AWS.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from trainship.cluster.manifests import ACM_CERTIFICATE_ARN, ARCHITECTURES, LB_SCHEMES
from trainship.config import ROLLOUTS

PREFIX = "trainship:"

COMPUTE_TYPES = {
    # context value -> aws_codebuild.ComputeType member
    "small": "SMALL",
    "medium": "MEDIUM",
    "large": "LARGE",
    "xlarge": "X_LARGE",
    "2xlarge": "X2_LARGE",
    "gpu": "LARGE",  # with a GPU (deep learning container) build image
}
# one source: what the manifests accept is what the context may ask for
LOAD_BALANCER_SCHEMES = LB_SCHEMES
CLUSTER_ARCHITECTURES = ARCHITECTURES
# SageMaker managed MLflow versions are major.minor (CreateMlflowTrackingServer's
# MlflowVersion); trainship needs MLflow 3 (LoggedModels).
MLFLOW_VERSION = re.compile(r"^([0-9]+)\.([0-9]+)(\.[0-9]+)?$")


@dataclass(frozen=True)
class Config:
    mlflow_tracking_uri: str = "managed"
    eks_cluster_name: str = "trainship"
    eks_namespace: str = "trainship"
    vpc_subnet_ids: list[str] = field(default_factory=list)
    vpc_security_group_ids: list[str] = field(default_factory=list)
    train_compute: str = "medium"
    api_auth: str = "iam"
    api_throttle_rate: float = 10.0
    api_throttle_burst: int = 20
    api_reserved_concurrency: int = 0  # 0: unreserved (new accounts have a quota of 10)
    log_retention_days: int = 30
    lambda_bundling: str = "local"
    base_image: str = "public.ecr.aws/docker/library/python:3.11-slim-bookworm"
    # the BuildKit image of BuildImage's docker-container builder; "" = Docker Hub's
    # moby/buildkit (anonymous pulls are rate-limited; a VPC without internet needs a copy)
    buildkit_image: str = ""
    service_type: str = "LoadBalancer"
    load_balancer_scheme: str = "internet-facing"
    load_balancer_source_ranges: list[str] = field(default_factory=list)
    # an ACM certificate ARN: every model's load balancer serves HTTPS on 443 with it (TLS
    # ends at the load balancer); "" = plain HTTP on 80 (docs/deploy-to-aws.md, "TLS")
    certificate_arn: str = ""
    cluster_architecture: str = "amd64"
    serving_workers: int = 1  # inference worker processes per pod
    mlflow_artifact_bucket: str = ""
    mlflow_artifact_kms_key_arn: str = ""
    mlflow_version: str = "3.0"
    vpc_id: str = ""
    dlc_account: str = ""
    # a new model's auth when its request names none: its URL is internet-facing by
    # default (a LoadBalancer Service), and a URL that answers anyone is not a safe default
    default_auth: str = "token"
    # how a new version of a model that already serves goes live when its request names no
    # rollout: "canary" (judged on live metrics, rolled back on a breach) or "all-at-once"
    default_rollout: str = "canary"

    @property
    def managed_mlflow(self) -> bool:
        return self.mlflow_tracking_uri == "managed"

    @property
    def compute_type(self) -> str:
        return COMPUTE_TYPES[self.train_compute]

    @property
    def gpu(self) -> bool:
        return self.train_compute == "gpu"

    @classmethod
    def from_context(cls, get: Any) -> Config:
        """``get`` is ``node.try_get_context``."""

        def value(name: str, default: Any) -> Any:
            found = get(PREFIX + name)
            return default if found is None else found

        def as_list(raw: Any) -> list[str]:
            if isinstance(raw, str):
                return [item.strip() for item in raw.split(",") if item.strip()]
            return [str(item) for item in raw or []]

        defaults = cls()
        config = cls(
            mlflow_tracking_uri=str(value("mlflowTrackingUri", defaults.mlflow_tracking_uri)),
            eks_cluster_name=str(value("eksClusterName", defaults.eks_cluster_name)),
            eks_namespace=str(value("eksNamespace", defaults.eks_namespace)),
            vpc_subnet_ids=as_list(value("vpcSubnetIds", [])),
            vpc_security_group_ids=as_list(value("vpcSecurityGroupIds", [])),
            train_compute=str(value("trainCompute", defaults.train_compute)).lower(),
            api_auth=str(value("apiAuth", defaults.api_auth)).lower(),
            api_throttle_rate=float(value("apiThrottleRate", defaults.api_throttle_rate)),
            api_throttle_burst=int(value("apiThrottleBurst", defaults.api_throttle_burst)),
            api_reserved_concurrency=int(value("apiReservedConcurrency",
                                               defaults.api_reserved_concurrency)),
            log_retention_days=int(value("logRetentionDays", defaults.log_retention_days)),
            lambda_bundling=str(value("lambdaBundling", defaults.lambda_bundling)).lower(),
            base_image=str(value("baseImage", defaults.base_image)),
            buildkit_image=str(value("buildkitImage", defaults.buildkit_image)),
            service_type=str(value("serviceType", defaults.service_type)),
            load_balancer_scheme=str(value("loadBalancerScheme",
                                           defaults.load_balancer_scheme)).lower(),
            load_balancer_source_ranges=as_list(value("loadBalancerSourceRanges", [])),
            certificate_arn=str(value("certificateArn", "")).strip(),
            cluster_architecture=str(value("clusterArchitecture",
                                           defaults.cluster_architecture)).lower(),
            serving_workers=int(value("servingWorkers", defaults.serving_workers)),
            mlflow_artifact_bucket=str(value("mlflowArtifactBucket", "")),
            mlflow_artifact_kms_key_arn=str(value("mlflowArtifactKmsKeyArn", "")),
            mlflow_version=str(value("mlflowVersion", defaults.mlflow_version)),
            vpc_id=str(value("vpcId", "")),
            dlc_account=str(value("deepLearningContainersAccount", "")),
            default_auth=str(value("defaultAuth", defaults.default_auth)).lower(),
            default_rollout=str(value("defaultRollout", defaults.default_rollout)).lower(),
        )
        config.validate()
        return config

    def validate(self) -> None:
        if self.default_auth not in ("token", "none"):
            raise ValueError("trainship:defaultAuth must be 'token' or 'none'")
        if self.default_rollout not in ROLLOUTS:
            raise ValueError("trainship:defaultRollout must be 'canary' or 'all-at-once'")
        if self.train_compute not in COMPUTE_TYPES:
            raise ValueError(f"trainship:trainCompute must be one of {sorted(COMPUTE_TYPES)}")
        if self.api_auth not in ("iam", "none"):
            raise ValueError("trainship:apiAuth must be 'iam' or 'none'")
        if self.service_type not in ("LoadBalancer", "ClusterIP", "NodePort"):
            raise ValueError("trainship:serviceType must be LoadBalancer, ClusterIP or NodePort")
        if self.lambda_bundling not in ("local", "none"):
            raise ValueError("trainship:lambdaBundling must be 'local' or 'none'")
        if bool(self.vpc_subnet_ids) != bool(self.vpc_security_group_ids):
            raise ValueError("give both trainship:vpcSubnetIds and trainship:vpcSecurityGroupIds")
        if self.vpc_subnet_ids and not self.vpc_id:
            raise ValueError("trainship:vpcId is needed with trainship:vpcSubnetIds: CodeBuild's "
                             "VpcConfig takes the VPC id with the subnets and security groups")
        if self.load_balancer_scheme not in LOAD_BALANCER_SCHEMES:
            raise ValueError("trainship:loadBalancerScheme must be 'internet-facing' or "
                             "'internal'")
        for cidr in self.load_balancer_source_ranges:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"trainship:loadBalancerSourceRanges: {cidr!r} is not a CIDR "
                                 f"block such as 203.0.113.0/24 ({exc})") from exc
        if self.certificate_arn and not ACM_CERTIFICATE_ARN.fullmatch(self.certificate_arn):
            raise ValueError("trainship:certificateArn must be an ACM certificate ARN "
                             "(arn:aws:acm:REGION:ACCOUNT:certificate/ID) in the cluster's region")
        if self.certificate_arn and self.service_type != "LoadBalancer":
            raise ValueError("trainship:certificateArn needs trainship:serviceType "
                             "LoadBalancer (the certificate goes on the load balancer)")
        if self.cluster_architecture not in CLUSTER_ARCHITECTURES:
            raise ValueError("trainship:clusterArchitecture must be 'amd64' or 'arm64'")
        if self.serving_workers < 1:
            raise ValueError("trainship:servingWorkers must be 1 or more (worker processes "
                             "per pod; give the pod as many CPUs)")
        version = MLFLOW_VERSION.match(self.mlflow_version)
        if not version or int(version.group(1)) < 3:
            raise ValueError("trainship:mlflowVersion must be an MLflow 3 version such as "
                             "'3.0' (trainship relies on MLflow 3 LoggedModels)")
        if self.api_reserved_concurrency < 0:
            raise ValueError("trainship:apiReservedConcurrency must be 0 (unreserved) or more")
        if self.mlflow_artifact_kms_key_arn and not self.mlflow_artifact_kms_key_arn.startswith(
                "arn:"):
            raise ValueError("trainship:mlflowArtifactKmsKeyArn must be a KMS key ARN")
        if self.managed_mlflow and (self.mlflow_artifact_bucket
                                    or self.mlflow_artifact_kms_key_arn):
            raise ValueError("trainship:mlflowArtifactBucket / mlflowArtifactKmsKeyArn are for "
                             "an existing tracking server; the managed one has its own bucket")
        if self.mlflow_artifact_bucket and not re.fullmatch(
                r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.mlflow_artifact_bucket):
            raise ValueError("trainship:mlflowArtifactBucket must be a bucket name (not a URI "
                             "or ARN), e.g. my-mlflow-artifacts")
        if self.dlc_account and not re.fullmatch(r"[0-9]{12}", self.dlc_account):
            raise ValueError("trainship:deepLearningContainersAccount must be a 12-digit "
                             "account id")
        if not self.managed_mlflow and not self.mlflow_tracking_uri.startswith(
                ("http://", "https://", "arn:")):
            raise ValueError("trainship:mlflowTrackingUri must be 'managed', an http(s) URL or "
                             "a SageMaker MLflow tracking server ARN")
