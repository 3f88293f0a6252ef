"""The stack key, the staging and access-log buckets, the model repository, log groups."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3

from infra.constructs.nag import acknowledge, checkov_skip
from infra.repository import MUTABLE_TAG_PATTERNS, lifecycle_rules

# trainship:logRetentionDays -> the RetentionDays member
RETENTION_DAYS = {1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK",
                  14: "TWO_WEEKS", 30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS",
                  180: "SIX_MONTHS", 365: "ONE_YEAR"}


def log_retention(days: int) -> logs.RetentionDays:
    if days not in RETENTION_DAYS:
        raise ValueError(f"trainship:logRetentionDays must be one of {sorted(RETENTION_DAYS)}")
    retention: logs.RetentionDays = getattr(logs.RetentionDays, RETENTION_DAYS[days])
    return retention


class Storage:
    """Key, AccessLogs, Staging and Models, in the stack's scope."""

    def __init__(self, stack: cdk.Stack, retention: logs.RetentionDays) -> None:
        self.stack = stack
        self.retention = retention
        self.key = kms.Key(stack, "Key", enable_key_rotation=True,
                           description="trainship: staging bucket, repository, logs",
                           removal_policy=cdk.RemovalPolicy.RETAIN)
        self.key.add_to_resource_policy(iam.PolicyStatement(
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                     "kms:Describe*"],
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                    f"arn:{stack.partition}:logs:{stack.region}:"
                                    f"{stack.account}:*"}}))

        self.access_logs = s3.Bucket(
            stack, "AccessLogs", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(365),
                                              noncurrent_version_expiration=cdk.Duration.days(30))],
            removal_policy=cdk.RemovalPolicy.RETAIN)
        acknowledge(self.access_logs, ("AwsSolutions-S1",
                                       "This bucket receives the staging bucket's server access "
                                       "logs; logging it to itself would loop."))
        checkov_skip(self.access_logs, ("CKV_AWS_18", "It is the access log bucket itself."))
        self.staging = s3.Bucket(
            stack, "Staging", encryption=s3.BucketEncryption.KMS, encryption_key=self.key,
            bucket_key_enabled=True, enforce_ssl=True, versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=self.access_logs, server_access_logs_prefix="staging/",
            lifecycle_rules=[s3.LifecycleRule(prefix="scripts/", expiration=cdk.Duration.days(90),
                                              noncurrent_version_expiration=cdk.Duration.days(7))],
            removal_policy=cdk.RemovalPolicy.RETAIN)
        self.repository = ecr.Repository(
            stack, "Models", image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE_WITH_EXCLUSION,
            image_tag_mutability_exclusion_filters=[
                ecr.ImageTagMutabilityExclusionFilter.wildcard(pattern)
                for pattern in MUTABLE_TAG_PATTERNS],
            encryption=ecr.RepositoryEncryption.KMS, encryption_key=self.key,
            lifecycle_rules=lifecycle_rules(), removal_policy=cdk.RemovalPolicy.RETAIN)
        checkov_skip(self.repository, ("CKV_AWS_51", "Tags are immutable except buildcache-* "
                                                     "(the BuildKit cache BuildImage rewrites) "
                                                     "and the live-/previous- pins that move "
                                                     "at each promotion."))

    def staged(self, pattern: str) -> str:
        """The ARN of staged objects: each deployment's files under scripts/<id>/."""
        return self.staging.arn_for_objects(f"scripts/{pattern}")

    def log_group(self, name: str) -> logs.LogGroup:
        """``<name>Logs``, encrypted with the stack key, kept for the configured days."""
        return logs.LogGroup(self.stack, f"{name}Logs", retention=self.retention,
                             encryption_key=self.key, removal_policy=cdk.RemovalPolicy.DESTROY)
