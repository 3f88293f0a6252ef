"""The MLflow tracking server: SageMaker managed MLflow, or an existing server's URI."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker

from infra.config import Config
from infra.constructs.nag import allow
from infra.constructs.storage import Storage

# What GET /models and GET /models/{model_name} call (trainship.models), and nothing else.
REGISTRY_READ_ACTIONS = (
    "sagemaker-mlflow:SearchRegisteredModels",
    "sagemaker-mlflow:GetRegisteredModel",
    "sagemaker-mlflow:SearchModelVersions",
    "sagemaker-mlflow:GetModelVersion",
    "sagemaker-mlflow:GetModelVersionByAlias",
)


class Mlflow:
    """The tracking URI and server ARN, and where MLflow keeps its artifacts.

    An existing tracking server's artifact bucket and KMS key come from the context
    (mlflowArtifactBucket, mlflowArtifactKmsKeyArn): MLflow clients read and write
    artifacts in S3 directly with their own credentials.
    """

    def __init__(self, stack: cdk.Stack, config: Config, storage: Storage) -> None:
        self.artifact_bucket_arn: str | None = None
        self.artifact_key_arn: str | None = None
        self.tracking_uri: str
        self.arn: str | None
        if not config.managed_mlflow:
            uri = config.mlflow_tracking_uri
            if config.mlflow_artifact_bucket:
                self.artifact_bucket_arn = (f"arn:{stack.partition}:s3:::"
                                            f"{config.mlflow_artifact_bucket}")
            self.artifact_key_arn = config.mlflow_artifact_kms_key_arn or None
            self.tracking_uri, self.arn = uri, uri if uri.startswith("arn:") else None
            return
        artifacts = s3.Bucket(
            stack, "MlflowArtifacts", encryption=s3.BucketEncryption.KMS,
            encryption_key=storage.key, bucket_key_enabled=True, enforce_ssl=True,
            versioned=True, block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=storage.access_logs, server_access_logs_prefix="mlflow/",
            removal_policy=cdk.RemovalPolicy.RETAIN)
        role = iam.Role(stack, "MlflowServerRole",
                        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                        description="SageMaker managed MLflow: its artifact store")
        self.artifact_bucket_arn = artifacts.bucket_arn
        self.artifact_key_arn = storage.key.key_arn
        allow(role, ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
              [artifacts.arn_for_objects("*")],
              "MLflow reads and writes any artifact of its own bucket, and no other.")
        allow(role, ["s3:ListBucket", "s3:GetBucketLocation"], [artifacts.bucket_arn],
              "MLflow lists its own artifact bucket.")
        allow(role, ["kms:Decrypt", "kms:GenerateDataKey"], [storage.key.key_arn],
              "The artifact bucket's key.")
        server = sagemaker.CfnMlflowTrackingServer(
            stack, "Mlflow", tracking_server_name=f"{stack.stack_name.lower()}-mlflow",
            artifact_store_uri=f"s3://{artifacts.bucket_name}/artifacts",
            role_arn=role.role_arn, tracking_server_size="Small",
            mlflow_version=config.mlflow_version, automatic_model_registration=False)
        self.tracking_uri = self.arn = server.attr_tracking_server_arn

    def access(self, grantee: iam.IGrantable) -> None:
        """Use the tracking server: its API (SageMaker managed MLflow) and its artifacts."""
        if self.arn is not None:
            allow(grantee, ["sagemaker-mlflow:*"], [self.arn],
                  "The MLflow REST API (runs, models, registry) on this one tracking "
                  "server; its action list mirrors MLflow's API.")
        self.artifact_access(grantee, ["s3:GetObject", "s3:PutObject"],
                             ["kms:Decrypt", "kms:GenerateDataKey"])

    def registry_read_access(self, grantee: iam.IGrantable) -> None:
        """Read the model registry only (the API's GET /models and rollback checks,
        PrepareRollback): registered models, their
        versions and aliases (GetRegisteredModel and SearchRegisteredModels answer with
        the aliases). Each action is of access level Read on the mlflow-tracking-server
        resource in the Service Authorization Reference, "Actions, resources, and
        condition keys for Amazon SageMaker with MLflow" (service prefix sagemaker-mlflow).
        An existing server given by URL needs no IAM (its own auth); no artifacts are read."""
        if self.arn is not None:
            allow(grantee, list(REGISTRY_READ_ACTIONS), [self.arn],
                  "Reads registered models and versions of this one tracking server.")

    def artifact_access(self, grantee: iam.IGrantable, object_actions: list[str],
                        kms_actions: list[str]) -> None:
        """The tracking server's artifact bucket (objects, listing) and its key."""
        if self.artifact_bucket_arn is not None:
            allow(grantee, object_actions, [f"{self.artifact_bucket_arn}/*"],
                  "MLflow clients read and write artifacts of the tracking server's "
                  "bucket directly.")
            allow(grantee, ["s3:ListBucket"], [self.artifact_bucket_arn],
                  "Listing run artifacts.")
        if self.artifact_key_arn is not None:
            allow(grantee, kms_actions, [self.artifact_key_arn], "The artifact bucket's key.")
