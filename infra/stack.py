"""The trainship pipeline on AWS: API Gateway -> Step Functions -> Lambda + CodeBuild.

The state machine is infra/statemachine/deploy.asl.json, the same file the local stack
runs; the Lambda handlers are lambdas/, the build specs buildspecs/.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_eks as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import limits
from infra.api_model import add_gateway_responses, add_request_model
from infra.bundling import REPO, lambda_code
from infra.config import Config
from infra.repository import MUTABLE_TAG_PATTERNS, lifecycle_rules
from trainship import script_access

ASL_PATH = REPO / "infra" / "statemachine" / "deploy.asl.json"
STATE_MACHINE_NAME = "TrainAndDeploy"
STEP_FUNCTIONS = {
    # state name -> (handler module, timeout seconds, memory MB, talks to the cluster)
    "ValidateRequest": ("lambdas.validate_request", 30, 512, False),
    "RegisterModel": ("lambdas.register_model", 300, 1024, False),
    "DeployModel": ("lambdas.deploy_model", 120, 512, True),
    "CheckRollout": ("lambdas.check_rollout", 60, 512, True),
    # the smoke test goes through the API server's service proxy: the cluster role
    "SmokeTestModel": ("lambdas.smoke_test_model", 120, 512, True),
    "PromoteModel": ("lambdas.promote_model", 120, 512, True),
    "RecordFailure": ("lambdas.record_failure", 120, 512, True),
}
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_14
GPU_IMAGE_TAG = "2.5.1-gpu-py311-cu124-ubuntu22.04-ec2"
CODEBUILD_EVENTS_RULE = "StepFunctionsGetEventForCodeBuildStartBuildRule"


def acknowledge(scope: Construct, *rules: tuple[str, str]) -> None:
    """cdk-nag 3.x acknowledgments, each with its specific reason."""
    cdk.Validations.of(scope).acknowledge(*[
        cdk.Acknowledgment(id=f"AwsSolutions::{rule}", reason=reason) for rule, reason in rules])


def checkov_skip(resource: Construct, *checks: tuple[str, str]) -> None:
    """Checkov's in-template suppressions, each with its justification."""
    cfn = resource.node.default_child if not isinstance(resource, cdk.CfnResource) else resource
    assert isinstance(cfn, cdk.CfnResource)
    cfn.add_metadata("checkov", {"skip": [{"id": cid, "comment": why} for cid, why in checks]})


class TrainshipStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config,
                 **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.arm64 = config.cluster_architecture == "arm64"
        self.vpc_policies: dict[str, iam.Policy] = {}
        retention = logs.RetentionDays(self._retention(config.log_retention_days))

        self.key = kms.Key(self, "Key", enable_key_rotation=True,
                           description="trainship: staging bucket, repository, logs",
                           removal_policy=cdk.RemovalPolicy.RETAIN)
        self.key.add_to_resource_policy(iam.PolicyStatement(
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                     "kms:Describe*"],
            principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
            resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                    f"arn:{self.partition}:logs:{self.region}:{self.account}:*"}}))

        # --- storage --------------------------------------------------------------------
        self.access_logs = s3.Bucket(
            self, "AccessLogs", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
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
            self, "Staging", encryption=s3.BucketEncryption.KMS, encryption_key=self.key,
            bucket_key_enabled=True, enforce_ssl=True, versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=self.access_logs, server_access_logs_prefix="staging/",
            lifecycle_rules=[s3.LifecycleRule(prefix="scripts/", expiration=cdk.Duration.days(90),
                                              noncurrent_version_expiration=cdk.Duration.days(7))],
            removal_policy=cdk.RemovalPolicy.RETAIN)
        self.repository = ecr.Repository(
            self, "Models", image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE_WITH_EXCLUSION,
            image_tag_mutability_exclusion_filters=[
                ecr.ImageTagMutabilityExclusionFilter.wildcard(pattern)
                for pattern in MUTABLE_TAG_PATTERNS],
            encryption=ecr.RepositoryEncryption.KMS, encryption_key=self.key,
            lifecycle_rules=lifecycle_rules(), removal_policy=cdk.RemovalPolicy.RETAIN)

        checkov_skip(self.repository, ("CKV_AWS_51", "Tags are immutable except buildcache* "
                                                     "(the BuildKit cache BuildImage rewrites) "
                                                     "and the live-/previous- pins that move "
                                                     "at each promotion."))
        self.tracking_uri, self.mlflow_arn = self._mlflow()

        # --- builds ---------------------------------------------------------------------
        self.source = s3_assets.Asset(self, "LibrarySource", path=str(REPO), exclude=[
            "*", "!trainship", "!trainship/**", "!buildspecs", "!buildspecs/**",
            "!pyproject.toml", "!README.md", "**/__pycache__"])
        self.train_project = self._train_project(retention)
        self.image_project = self._image_project(retention)

        # --- functions ------------------------------------------------------------------
        code = lambda_code(config.lambda_bundling)
        self.cluster_role = self._lambda_role("ClusterRole", "DeployModel, CheckRollout, "
                                              "SmokeTestModel, PromoteModel and "
                                              "RecordFailure: the EKS side")
        self.functions: dict[str, lambda_.Function] = {}
        cluster_env = {
            "TRAINSHIP_LB_SCHEME": config.load_balancer_scheme,
            "TRAINSHIP_LB_SOURCE_RANGES": ",".join(config.load_balancer_source_ranges),
            "TRAINSHIP_CLUSTER_ARCH": config.cluster_architecture,
            "TRAINSHIP_IMAGE_REPOSITORY": self.repository.repository_uri,
        }
        for step, (module, timeout, memory, cluster) in STEP_FUNCTIONS.items():
            role = self.cluster_role if cluster else self._lambda_role(f"{step}Role", step)
            self.functions[step] = self._function(step, code, f"{module}.handler", role,
                                                  timeout, memory, retention,
                                                  extra_env=cluster_env if cluster else None)
        self._grant_step_permissions()
        self._eks_access()

        # --- state machine --------------------------------------------------------------
        self.state_machine = self._state_machine(retention)

        # --- API ------------------------------------------------------------------------
        self.api_function = self._function(
            "Api", code, "lambdas.api.handler", self._lambda_role("ApiRole", "the API"), 29,
            512, retention, reserved=config.api_reserved_concurrency or None,
            extra_env={"STATE_MACHINE_ARN": self.state_machine.state_machine_arn})
        self._grant_api_permissions()
        self.api = self._api(retention)

        cdk.CfnOutput(self, "ApiUrl", value=self.api.url)
        cdk.CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        cdk.CfnOutput(self, "RepositoryUri", value=self.repository.repository_uri)
        cdk.CfnOutput(self, "StagingBucket", value=self.staging.bucket_name)
        cdk.CfnOutput(self, "MlflowTrackingUri", value=self.tracking_uri)
        # what `trainship doctor` checks the account against
        cdk.CfnOutput(self, "EksClusterName", value=config.eks_cluster_name)
        cdk.CfnOutput(self, "EksNamespace", value=config.eks_namespace)
        cdk.CfnOutput(self, "ClusterRoleArn", value=self.cluster_role.role_arn)
        cdk.CfnOutput(self, "LoadBalancerScheme", value=config.load_balancer_scheme)

    # ------------------------------------------------------------------------------------

    def nag_notation(self, value: Any) -> str:
        """A (token) string as cdk-nag writes it in findings: Ref X -> <X>, GetAtt -> <X.Arn>."""

        def render(part: Any) -> str:
            if isinstance(part, str):
                return part
            if "Ref" in part:
                return f"<{part['Ref']}>"
            if "Fn::GetAtt" in part:
                return f"<{part['Fn::GetAtt'][0]}.{part['Fn::GetAtt'][1]}>"
            if "Fn::Join" in part:
                return str(part["Fn::Join"][0]).join(render(p) for p in part["Fn::Join"][1])
            raise ValueError(f"cannot render {part}")

        return render(self.resolve(value))

    def allow(self, grantee: iam.IGrantable, actions: list[str], resources: list[str],
              reason: str) -> None:
        """One least-privilege statement; its wildcards acknowledged with the reason."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=actions, resources=resources))
        findings = [f"Action::{a}" for a in actions if "*" in a]
        findings += [f"Resource::{n}" for n in map(self.nag_notation, resources) if "*" in n]
        scope: Construct = grantee if isinstance(grantee, Construct) else self
        if isinstance(grantee, lambda_.Function) and isinstance(grantee.role, iam.Role):
            scope = grantee.role
        acknowledge(scope, *[(f"AwsSolutions-IAM5[{f}]", reason) for f in findings])

    def staged(self, pattern: str) -> str:
        return self.staging.arn_for_objects(f"scripts/{pattern}")

    @staticmethod
    def _retention(days: int) -> str:
        allowed = {1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK",
                   14: "TWO_WEEKS", 30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS",
                   180: "SIX_MONTHS", 365: "ONE_YEAR"}
        if days not in allowed:
            raise ValueError(f"trainship:logRetentionDays must be one of {sorted(allowed)}")
        return str(getattr(logs.RetentionDays, allowed[days]).value)

    def _log_group(self, name: str, retention: logs.RetentionDays) -> logs.LogGroup:
        return logs.LogGroup(self, f"{name}Logs", retention=retention, encryption_key=self.key,
                             removal_policy=cdk.RemovalPolicy.DESTROY)

    def _mlflow(self) -> tuple[str, str | None]:
        """The tracking URI and server ARN; sets where MLflow keeps its artifacts.

        An existing tracking server's artifact bucket and KMS key come from the context
        (mlflowArtifactBucket, mlflowArtifactKmsKeyArn): MLflow clients read and write
        artifacts in S3 directly with their own credentials.
        """
        self.artifact_bucket_arn: str | None = None
        self.artifact_key_arn: str | None = None
        if not self.config.managed_mlflow:
            uri = self.config.mlflow_tracking_uri
            if self.config.mlflow_artifact_bucket:
                self.artifact_bucket_arn = (f"arn:{self.partition}:s3:::"
                                            f"{self.config.mlflow_artifact_bucket}")
            self.artifact_key_arn = self.config.mlflow_artifact_kms_key_arn or None
            return uri, uri if uri.startswith("arn:") else None
        artifacts = s3.Bucket(
            self, "MlflowArtifacts", encryption=s3.BucketEncryption.KMS, encryption_key=self.key,
            bucket_key_enabled=True, enforce_ssl=True, versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=self.access_logs, server_access_logs_prefix="mlflow/",
            removal_policy=cdk.RemovalPolicy.RETAIN)
        role = iam.Role(self, "MlflowServerRole",
                        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                        description="SageMaker managed MLflow: its artifact store")
        self.artifact_bucket_arn = artifacts.bucket_arn
        self.artifact_key_arn = self.key.key_arn
        self.allow(role, ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                   [artifacts.arn_for_objects("*")],
                   "MLflow reads and writes any artifact of its own bucket, and no other.")
        self.allow(role, ["s3:ListBucket", "s3:GetBucketLocation"], [artifacts.bucket_arn],
                   "MLflow lists its own artifact bucket.")
        self.allow(role, ["kms:Decrypt", "kms:GenerateDataKey"], [self.key.key_arn],
                   "The artifact bucket's key.")
        server = sagemaker.CfnMlflowTrackingServer(
            self, "Mlflow", tracking_server_name=f"{self.stack_name.lower()}-mlflow",
            artifact_store_uri=f"s3://{artifacts.bucket_name}/artifacts",
            role_arn=role.role_arn, tracking_server_size="Small",
            mlflow_version=self.config.mlflow_version, automatic_model_registration=False)
        arn = server.attr_tracking_server_arn
        return arn, arn

    def _build_role(self, name: str, description: str) -> iam.Role:
        return iam.Role(self, name, assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
                        description=description)

    def _mlflow_access(self, grantee: iam.IGrantable) -> None:
        """Use the tracking server: its API (SageMaker managed MLflow) and its artifacts."""
        if self.mlflow_arn is not None:
            self.allow(grantee, ["sagemaker-mlflow:*"], [self.mlflow_arn],
                       "The MLflow REST API (runs, models, registry) on this one tracking "
                       "server; its action list mirrors MLflow's API.")
        self._artifact_access(grantee, ["s3:GetObject", "s3:PutObject"],
                              ["kms:Decrypt", "kms:GenerateDataKey"])

    def _artifact_access(self, grantee: iam.IGrantable, object_actions: list[str],
                         kms_actions: list[str]) -> None:
        """The tracking server's artifact bucket (objects, listing) and its key."""
        if self.artifact_bucket_arn is not None:
            self.allow(grantee, object_actions, [f"{self.artifact_bucket_arn}/*"],
                       "MLflow clients read and write artifacts of the tracking server's "
                       "bucket directly.")
            self.allow(grantee, ["s3:ListBucket"], [self.artifact_bucket_arn],
                       "Listing run artifacts.")
        if self.artifact_key_arn is not None:
            self.allow(grantee, kms_actions, [self.artifact_key_arn],
                       "The artifact bucket's key.")

    def _build_image(self, gpu: bool, arm64: bool) -> codebuild.IBuildImage:
        if gpu:
            # No account: CDK's region-info resolves the Deep Learning Containers registry
            # account of the stack's region (a CfnMapping over every region of the target
            # partitions when the region is unknown at synth); the context key overrides
            # it for a region region-info does not know yet.
            return codebuild.LinuxGpuBuildImage.aws_deep_learning_containers_image(
                "pytorch-training", GPU_IMAGE_TAG, self.config.dlc_account or None)
        if arm64:
            return codebuild.LinuxArmBuildImage.AMAZON_LINUX_2023_STANDARD_3_0
        return codebuild.LinuxBuildImage.STANDARD_7_0

    def _project(self, name: str, role: iam.Role, retention: logs.RetentionDays,
                 description: str, buildspec: str, *, privileged: bool, gpu: bool,
                 minutes: int, variables: dict[str, str], arm64: bool = False,
                 cache: codebuild.Cache | None = None) -> codebuild.Project:
        """A project building from the library source asset with a buildspec from it; its
        role may stage the error document, use the stack key and reach MLflow."""
        if privileged:  # the image build: MEDIUM on x86; ARM on-demand builds run on LARGE
            compute = "LARGE" if arm64 else "MEDIUM"
        else:
            compute = self.config.compute_type
        project = codebuild.Project(
            self, name, role=role, description=description,
            source=codebuild.Source.s3(bucket=self.source.bucket, path=self.source.s3_object_key),
            build_spec=codebuild.BuildSpec.from_source_filename(buildspec),
            environment=codebuild.BuildEnvironment(
                build_image=self._build_image(gpu, arm64), privileged=privileged,
                compute_type=getattr(codebuild.ComputeType, compute),
                environment_variables={
                    k: codebuild.BuildEnvironmentVariable(value=v) for k, v in {
                        "MLFLOW_TRACKING_URI": self.tracking_uri,
                        "TRAINSHIP_STAGING_KMS_KEY_ID": self.key.key_arn,
                        # MLflow's telemetry thread gives up without internet and edits
                        # os.environ while other threads copy it (KeyError races)
                        "MLFLOW_DISABLE_TELEMETRY": "true",
                        **variables}.items()}),
            timeout=cdk.Duration.minutes(minutes),
            queued_timeout=cdk.Duration.minutes(limits.BUILD_QUEUED_MINUTES),
            encryption_key=self.key, cache=cache,
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(
                log_group=self._log_group(name, retention))))
        self.allow(role, ["s3:PutObject"], [self.staged("*/error.json")],
                   "The error document beside each deployment's script.")
        self.allow(role, ["s3:GetObject"], [self.staged("*/job.json")],
                   "The job document the build is started with (TRAINSHIP_JOB_URI).")
        self.allow(role, ["kms:Decrypt", "kms:GenerateDataKey"], [self.key.key_arn],
                   "The stack key (staging bucket, repository).")
        self._mlflow_access(role)
        if self.config.vpc_subnet_ids:
            self._project_vpc(project, role)
        self._acknowledge_codebuild_defaults(project, role)
        return project

    def _project_vpc(self, project: codebuild.Project, role: iam.Role) -> None:
        """Builds in the VPC, so a private MLflow is reachable.

        CodeBuild's VpcConfig takes the VPC id with subnets and security groups; the
        subnets must be private with a NAT route for the internet (PyPI, base images) and
        the service role must allow the ENI calls ("Allow Amazon VPC access in your
        CodeBuild projects"; "Allow CodeBuild access to AWS services required to create a
        VPC network interface"). CodeBuild checks those permissions when the project is
        created, so the project waits for the role's policy.
        """
        cfn = project.node.default_child
        assert isinstance(cfn, codebuild.CfnProject)
        cfn.vpc_config = codebuild.CfnProject.VpcConfigProperty(
            vpc_id=self.config.vpc_id, subnets=self.config.vpc_subnet_ids,
            security_group_ids=self.config.vpc_security_group_ids)
        subnet_arns = [f"arn:{self.partition}:ec2:{self.region}:{self.account}:subnet/{sid}"
                       for sid in self.config.vpc_subnet_ids]
        # its own policy (the role's default policy names the project: a cycle otherwise)
        policy = iam.Policy(self, f"{project.node.id}VpcPolicy", roles=[role], statements=[
            iam.PolicyStatement(actions=[
                "ec2:CreateNetworkInterface", "ec2:DescribeDhcpOptions",
                "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
                "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcs"],
                resources=["*"]),
            iam.PolicyStatement(
                actions=["ec2:CreateNetworkInterfacePermission"],
                resources=[f"arn:{self.partition}:ec2:{self.region}:{self.account}:"
                           "network-interface/*"],
                conditions={"StringEquals": {
                    "ec2:Subnet": subnet_arns,
                    "ec2:AuthorizedService": "codebuild.amazonaws.com"}})])
        checkov_skip(policy, ("CKV_AWS_111", "CodeBuild's VPC network interface calls have no "
                                             "resource-level permissions; the permission "
                                             "call is limited to the subnets by conditions."))
        acknowledge(policy, ("AwsSolutions-IAM5[Resource::*]",
                             "CodeBuild's VPC network interface calls have no resource-level "
                             "permissions."),
                    ("AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:"
                     "<AWS::AccountId>:network-interface/*]",
                     "The build's own network interfaces, limited to the configured subnets "
                     "and to CodeBuild by conditions."))
        project.node.add_dependency(policy)

    def _train_project(self, retention: logs.RetentionDays) -> codebuild.Project:
        role = self._build_role("TrainRole", "TrainModel builds: read the staged script, "
                                             "reach MLflow, write logs. No ECR, no EKS.")
        self.script_role = self._script_role(role)
        variables = {"TRAINSHIP_ENV_CACHE": "/root/.cache/trainship/envs",
                     "TRAINSHIP_SCRIPT_ROLE_ARN": self.script_role.role_arn}
        if self.artifact_key_arn is not None:
            variables["TRAINSHIP_MLFLOW_ARTIFACT_KMS_KEY_ARN"] = self.artifact_key_arn
        project = self._project(
            "Train", role, retention, "trainship TrainModel: run a training script",
            "buildspecs/train.yml", privileged=False, gpu=self.config.gpu,
            minutes=limits.TRAIN_BUILD_MINUTES, variables=variables,
            cache=codebuild.Cache.local(codebuild.LocalCacheMode.CUSTOM))
        if self.config.gpu:
            acknowledge(role, ("AwsSolutions-IAM5[Resource::*]",
                               "ecr:GetAuthorizationToken (no resource-level permissions) to "
                               "pull the AWS Deep Learning Container GPU build image."))
            acknowledge(project, ("AwsSolutions-CB5", "The GPU build image is AWS's own Deep "
                                                      "Learning Container, pulled by account."))
        self.allow(role, ["s3:GetObject"], [self.staged("*/train.py")],
                   "Each deployment's staged script (the path holds the deployment id).")
        return project

    def _script_role(self, train_role: iam.Role) -> iam.Role:
        """The user's script's own role, assumed only by the training runner.

        The runner (TrainRole) assumes it with a session policy that narrows it to one
        deployment's run and artifact prefixes (trainship.script_access); this policy is
        the ceiling: the MLflow actions a script's logging needs on this one tracking
        server, and the artifact bucket and key. Nothing of the staging bucket, ECR or EKS.
        """
        role = iam.Role(self, "ScriptRole", assumed_by=iam.ArnPrincipal(train_role.role_arn),
                        description="trainship: the training script's own credentials "
                                    "(assumed by the training runner with a session policy)",
                        max_session_duration=cdk.Duration.hours(1))
        self.allow(train_role, ["sts:AssumeRole"], [role.role_arn],
                   "The training runner assumes the script role, and no other.")
        actions = list(script_access.MLFLOW_SCRIPT_ACTIONS)
        if self.mlflow_arn is not None and actions:
            self.allow(role, actions, [self.mlflow_arn],
                       "The MLflow actions a script's run and model logging need, on this "
                       "one tracking server.")
        self._artifact_access(role, list(script_access.S3_OBJECT_ACTIONS),
                              list(script_access.KMS_ACTIONS))
        return role

    def _image_project(self, retention: logs.RetentionDays) -> codebuild.Project:
        role = self._build_role("ImageRole", "BuildImage builds: read the model from MLflow, "
                                             "push to the one repository, write logs.")
        project = self._project(
            "Image", role, retention, "trainship BuildImage: model image to ECR",
            "buildspecs/image.yml", privileged=True, gpu=False,
            minutes=limits.IMAGE_BUILD_MINUTES, arm64=self.arm64, variables={
                "TRAINSHIP_IMAGE_BUILDER": "docker",
                "TRAINSHIP_IMAGE_REPOSITORY": self.repository.repository_uri,
                "TRAINSHIP_BASE_IMAGE": self.config.base_image,
                "TRAINSHIP_CLUSTER_ARCH": self.config.cluster_architecture,
                **({"TRAINSHIP_BUILDKIT_IMAGE": self.config.buildkit_image}
                   if self.config.buildkit_image else {})})
        self.allow(role, ["ecr:GetAuthorizationToken"], ["*"],
                   "ecr:GetAuthorizationToken has no resource-level permissions.")
        self.allow(role, ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
                          "ecr:BatchGetImage", "ecr:PutImage", "ecr:InitiateLayerUpload",
                          "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"],
                   [self.repository.repository_arn], "Push and pull the one model repository.")
        return project

    def _acknowledge_codebuild_defaults(self, project: codebuild.Project,
                                        role: iam.Role) -> None:
        """What CDK grants every project: its own log streams and report groups."""
        name = self.get_logical_id(project.node.default_child)  # type: ignore[arg-type]
        base = "arn:<AWS::Partition>:{}:<AWS::Region>:<AWS::AccountId>:"
        acknowledge(role, (
            f"AwsSolutions-IAM5[Resource::{base.format('logs')}log-group:/aws/codebuild/"
            f"<{name}>:*]", "The project's own CodeBuild log streams."), (
            f"AwsSolutions-IAM5[Resource::{base.format('codebuild')}report-group/<{name}>-*]",
            "The project's own test report groups."),
            ("AwsSolutions-IAM5[Action::s3:GetObject*]", "CDK's read grant on the library "
                                                         "source asset the build checks out."),
            ("AwsSolutions-IAM5[Action::s3:GetBucket*]", "CDK's read grant on the source asset."),
            ("AwsSolutions-IAM5[Action::s3:List*]", "CDK's read grant on the source asset."),
            ("AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
             "CDK's grant on the project's own encryption key (build artifacts and logs)."),
            ("AwsSolutions-IAM5[Action::kms:ReEncrypt*]",
             "CDK's grant on the project's own encryption key."))

    def _lambda_role(self, name: str, what: str) -> iam.Role:
        role = iam.Role(self, name, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description=f"trainship Lambda: {what}")
        if self.config.vpc_subnet_ids:
            # its own policy, which the functions wait for: Lambda checks the ENI
            # permissions when a function is created in a VPC
            policy = iam.Policy(self, f"{name}VpcPolicy", roles=[role], statements=[
                iam.PolicyStatement(
                    actions=["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces",
                             "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                             "ec2:UnassignPrivateIpAddresses"], resources=["*"])])
            acknowledge(policy, ("AwsSolutions-IAM5[Resource::*]",
                                 "Lambda's VPC ENI actions have no resource-level permissions."))
            checkov_skip(policy, ("CKV_AWS_111", "Lambda's VPC network interface actions have "
                                                 "no resource-level permissions."))
            self.vpc_policies[name] = policy
        return role

    def _function(self, name: str, code: lambda_.Code, handler: str, role: iam.Role,
                  timeout: int, memory: int, retention: logs.RetentionDays, *,
                  reserved: int | None = None,
                  extra_env: dict[str, str] | None = None) -> lambda_.Function:
        log_group = self._log_group(f"{name}Function", retention)
        env = {
            "POWERTOOLS_SERVICE_NAME": "trainship",
            "POWERTOOLS_METRICS_NAMESPACE": "trainship",
            "TRAINSHIP_STAGING_URI": self.staging.s3_url_for_object("scripts"),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "TRAINSHIP_CLUSTER": "kubernetes",
            "TRAINSHIP_EKS_CLUSTER": self.config.eks_cluster_name,
            "TRAINSHIP_NAMESPACE": self.config.eks_namespace,
            "TRAINSHIP_SERVICE_TYPE": self.config.service_type,
            "TRAINSHIP_STAGING_KMS_KEY_ID": self.key.key_arn,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "TRAINSHIP_ROLLOUT_TIMEOUT_SECONDS": str(limits.ROLLOUT_TIMEOUT_SECONDS),
            "TRAINSHIP_ROLLOUT_POLL_SECONDS": str(limits.ROLLOUT_POLL_SECONDS),
            **(extra_env or {}),
        }
        function = lambda_.Function(
            self, f"{name}Function", code=code, handler=handler,
            runtime=LAMBDA_RUNTIME, architecture=lambda_.Architecture.ARM_64,
            role=role, timeout=cdk.Duration.seconds(timeout), memory_size=memory,
            tracing=lambda_.Tracing.ACTIVE, logging_format=lambda_.LoggingFormat.JSON,
            log_group=log_group, environment=env, environment_encryption=self.key,
            reserved_concurrent_executions=reserved,
            description=f"trainship {name}")
        log_group.grant_write(role)
        vpc_policy = self.vpc_policies.get(role.node.id)
        if vpc_policy is not None:
            function.node.add_dependency(vpc_policy)
        if self.config.vpc_subnet_ids:
            cfn = function.node.default_child
            assert isinstance(cfn, lambda_.CfnFunction)
            cfn.vpc_config = lambda_.CfnFunction.VpcConfigProperty(
                subnet_ids=self.config.vpc_subnet_ids,
                security_group_ids=self.config.vpc_security_group_ids)
        checkov_skip(function,
                     ("CKV_AWS_116", "Invoked synchronously by Step Functions / API Gateway, "
                                     "which own retries and failures; a DLQ would never fill."),
                     *(() if self.config.vpc_subnet_ids else (
                         ("CKV_AWS_117", "Reaches only public AWS endpoints and MLflow; set "
                                         "trainship:vpcSubnetIds for a private EKS endpoint."),)),
                     *(() if reserved else (
                         ("CKV_AWS_115", "Unreserved on purpose: step functions run once per "
                                         "state per deployment, and the API function's "
                                         "reservation is opt-in (apiReservedConcurrency): "
                                         "new accounts have a concurrency quota of 10."),)))
        acknowledge(role, ("AwsSolutions-IAM5[Action::xray:*]", "X-Ray has no resources"),
                    ("AwsSolutions-IAM5[Resource::*]",
                     "X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level "
                     "permissions."))
        return function

    def _grant_step_permissions(self) -> None:
        f = self.functions
        self.allow(f["ValidateRequest"], ["s3:PutObject"],
                   [self.staged("*/train.py"), self.staged("*/job.json")],
                   "Stages each deployment's script and job document under its own id.")
        # RegisterModel restages the job document BuildImage reads (TRAINSHIP_JOB_URI)
        self.allow(f["RegisterModel"], ["s3:PutObject"], [self.staged("*/job.json")],
                   "Restages each deployment's job document for the image build.")
        for step in ("ValidateRequest", "RegisterModel"):
            self.allow(f[step], ["kms:GenerateDataKey"], [self.key.key_arn],
                       "The staging bucket's key (staged objects name it).")
        self.allow(f["RecordFailure"], ["s3:GetObject"], [self.staged("*/error.json")],
                   "Reads the error document a failed build staged.")
        self.allow(f["RecordFailure"], ["kms:Decrypt"], [self.key.key_arn],
                   "The staging bucket's key.")
        # Without s3:ListBucket, S3 answers a GetObject for a missing key with 403, not
        # 404 (Amazon S3 API reference, GetObject, "Permissions"): a build that failed
        # before staging its error document would look like a permission error. S3 checks
        # ListBucket with the requested key as s3:prefix, so the condition keeps the grant
        # to the staged objects.
        f["RecordFailure"].add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[self.staging.bucket_arn],
            conditions={"StringLike": {"s3:prefix": ["scripts/*"]}}))
        self.allow(f["PromoteModel"], ["ecr:BatchGetImage", "ecr:PutImage",
                                       "ecr:DescribeImages"],
                   [self.repository.repository_arn],
                   "Pins the serving and rollback images (live-/previous- tags) so the "
                   "lifecycle policy keeps them.")
        for step in ("RegisterModel", "SmokeTestModel", "PromoteModel"):
            self._mlflow_access(f[step])

    def _eks_access(self) -> None:
        cluster_arn = (f"arn:{self.partition}:eks:{self.region}:{self.account}:cluster/"
                       f"{self.config.eks_cluster_name}")
        self.cluster_role.add_to_policy(iam.PolicyStatement(
            actions=["eks:DescribeCluster"], resources=[cluster_arn]))
        eks.CfnAccessEntry(
            self, "DeployAccess", cluster_name=self.config.eks_cluster_name,
            principal_arn=self.cluster_role.role_arn, type="STANDARD",
            access_policies=[eks.CfnAccessEntry.AccessPolicyProperty(
                policy_arn=f"arn:{self.partition}:eks::aws:cluster-access-policy/"
                           "AmazonEKSEditPolicy",
                access_scope=eks.CfnAccessEntry.AccessScopeProperty(
                    type="namespace", namespaces=[self.config.eks_namespace]))])

    def _state_machine(self, retention: logs.RetentionDays) -> sfn.StateMachine:
        log_group = self._log_group("StateMachine", retention)
        role = iam.Role(self, "StateMachineRole",
                        assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
                        description="TrainAndDeploy: invoke its Lambdas, run its builds")
        role.add_to_policy(iam.PolicyStatement(
            actions=["lambda:InvokeFunction"],
            resources=[arn for fn in self.functions.values()
                       for arn in (fn.function_arn, f"{fn.function_arn}:*")]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["codebuild:StartBuild", "codebuild:StopBuild", "codebuild:BatchGetBuilds"],
            resources=[self.train_project.project_arn, self.image_project.project_arn]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[f"arn:{self.partition}:events:{self.region}:{self.account}:rule/"
                       f"{CODEBUILD_EVENTS_RULE}"]))
        substitutions = {f"{step}FunctionArn": fn.function_arn
                         for step, fn in self.functions.items()}
        substitutions.update({"TrainProjectName": self.train_project.project_name,
                              "ImageProjectName": self.image_project.project_name})
        machine = sfn.StateMachine(
            self, "StateMachine", state_machine_name=f"{self.stack_name}-{STATE_MACHINE_NAME}",
            definition_body=sfn.DefinitionBody.from_string(ASL_PATH.read_text()),
            definition_substitutions=substitutions, role=role, tracing_enabled=True,
            # No `timeout=` here: with a definition body from a string CDK drops it. The
            # execution timeout is the ASL's top-level TimeoutSeconds (infra/limits.py).
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL,
                                include_execution_data=True))
        fn_ids = [self.resolve(fn.function_arn)["Fn::GetAtt"][0]
                  for fn in self.functions.values()]
        acknowledge(role, *[(f"AwsSolutions-IAM5[Resource::<{fid}.Arn>:*]",
                             "Any version or alias of this state machine's own function.")
                            for fid in fn_ids],
                    ("AwsSolutions-IAM5[Resource::*]",
                     "CloudWatch Logs delivery and X-Ray actions have no resource-level "
                     "permissions (added by CDK for logging and tracing)."))
        return machine

    def _grant_api_permissions(self) -> None:
        role = self.api_function.role
        assert role is not None
        sm = self.state_machine
        execution_arns = (f"arn:{self.partition}:states:{self.region}:{self.account}:execution:"
                          f"{sm.state_machine_name}:*")
        self.allow(role, ["states:StartExecution", "states:ListExecutions"],
                   [sm.state_machine_arn], "Starts and lists this state machine only.")
        self.allow(role, ["states:DescribeExecution", "states:GetExecutionHistory"],
                   [execution_arns], "Reads only executions of this state machine "
                                     "(a deployment id is an execution name).")
        build_logs = [self.node.find_child(name) for name in ("TrainLogs", "ImageLogs")]
        self.allow(role, ["logs:GetLogEvents"],
                   [lg.log_group_arn for lg in build_logs if isinstance(lg, logs.LogGroup)],
                   "Reads the build logs of the two projects (GET /deployments/{id}/logs).")

    def _api(self, retention: logs.RetentionDays) -> apigw.RestApi:
        access_logs = self._log_group("ApiAccess", retention)
        iam_auth = self.config.api_auth == "iam"
        api = apigw.RestApi(
            self, "Api", rest_api_name=f"{self.stack_name}-api",
            description="trainship: POST a training script, get an inference URL",
            cloud_watch_role=True, cloud_watch_role_removal_policy=cdk.RemovalPolicy.DESTROY,
            deploy_options=apigw.StageOptions(
                stage_name="v1", tracing_enabled=True, metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR, data_trace_enabled=False,
                throttling_rate_limit=self.config.api_throttle_rate,
                throttling_burst_limit=self.config.api_throttle_burst,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=True)),
            default_method_options=apigw.MethodOptions(
                authorization_type=(apigw.AuthorizationType.IAM if iam_auth
                                    else apigw.AuthorizationType.NONE)),
            endpoint_types=[apigw.EndpointType.REGIONAL])
        checkov_skip(api.deployment_stage, ("CKV_AWS_120", "Responses are deployment status "
                                                           "that must never be served stale."))
        validator = api.add_request_validator("BodyValidator", validate_request_body=True,
                                              validate_request_parameters=True)
        model = add_request_model(api)
        add_gateway_responses(api)
        integration = apigw.LambdaIntegration(self.api_function)
        deployments = api.root.add_resource("deployments")
        models = {"application/json": model}
        deployments.add_method("POST", integration, request_validator=validator,
                               request_models=models)
        deployments.add_method("GET", integration)
        one = deployments.add_resource("{deployment_id}")
        one.add_method("GET", integration)
        one.add_resource("logs").add_method("GET", integration)
        api.root.add_resource("mlops").add_resource("deploy").add_method(
            "POST", integration, request_validator=validator, request_models=models)
        acknowledge(api, ("AwsSolutions-COG4",
                          "Callers authenticate with IAM (SigV4), not Cognito user pools."),
                    ("AwsSolutions-APIG3", "A regional API behind IAM auth and throttling; "
                                           "attach a WAF web ACL per account policy."),
                    ("AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                     "service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
                     "API Gateway's account-level role for pushing its logs."))
        if not iam_auth:
            acknowledge(api, ("AwsSolutions-APIG4", "apiAuth=none was chosen in the context "
                                                    "for a private, network-restricted API."))
        return api


def definition_with_substitutions(template: dict[str, Any]
                                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state machine's DefinitionString and DefinitionSubstitutions from a template."""
    machine = next(r for r in template["Resources"].values()
                   if r["Type"] == "AWS::StepFunctions::StateMachine")
    props = machine["Properties"]
    definition = props["DefinitionString"]
    if isinstance(definition, dict):  # Fn::Join of literal parts
        definition = "".join(p if isinstance(p, str) else "" for p in
                             definition["Fn::Join"][1])
    return json.loads(definition), props.get("DefinitionSubstitutions", {})

