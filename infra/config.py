"""Stack configuration from CDK context (cdk.json or `cdk deploy -c key=value`).

Every key has a documented default (docs/deploy-to-aws.md); nothing here calls AWS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    api_reserved_concurrency: int = 10
    log_retention_days: int = 30
    lambda_bundling: str = "local"
    base_image: str = "public.ecr.aws/docker/library/python:3.11-slim-bookworm"
    service_type: str = "LoadBalancer"

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
            service_type=str(value("serviceType", defaults.service_type)),
        )
        config.validate()
        return config

    def validate(self) -> None:
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
        if not self.managed_mlflow and not self.mlflow_tracking_uri.startswith(
                ("http://", "https://", "arn:")):
            raise ValueError("trainship:mlflowTrackingUri must be 'managed', an http(s) URL or "
                             "a SageMaker MLflow tracking server ARN")
