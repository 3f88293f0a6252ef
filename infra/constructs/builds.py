"""The library source asset and the two CodeBuild projects (TrainModel, BuildImage)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets

from infra import limits
from infra.bundling import REPO
from infra.config import Config
from infra.constructs.mlflow import Mlflow
from infra.constructs.nag import acknowledge, allow, checkov_skip
from infra.constructs.storage import Storage
from trainship import script_access
from trainship.pipeline import BUILD_STEPS

GPU_IMAGE_TAG = "2.5.1-gpu-py311-cu124-ubuntu22.04-ec2"
TRAIN = BUILD_STEPS["TrainModel"]
IMAGE = BUILD_STEPS["BuildImage"]


class Builds:
    """``Train`` and ``Image``: each builds from the library source with its buildspec."""

    def __init__(self, stack: cdk.Stack, config: Config, storage: Storage,
                 mlflow: Mlflow) -> None:
        self.stack = stack
        self.config = config
        self.storage = storage
        self.mlflow = mlflow
        self.log_groups: dict[str, logs.LogGroup] = {}
        self.source = s3_assets.Asset(stack, "LibrarySource", path=str(REPO), exclude=[
            "*", ".*", "!trainship", "!trainship/**", "!buildspecs", "!buildspecs/**",
            "!pyproject.toml", "!requirements.lock", "!README.md",  # buildspecs/install.sh
            "**/__pycache__"])  # ".*": see bundling.EXCLUDE
        self.train_project = self._train_project()
        self.image_project = self._image_project()

    @property
    def projects(self) -> dict[str, codebuild.Project]:
        """The projects by the state that runs them."""
        return {TRAIN.state: self.train_project, IMAGE.state: self.image_project}

    def _build_role(self, name: str, description: str) -> iam.Role:
        return iam.Role(self.stack, name,
                        assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
                        description=description)

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

    def _local_cache(self, *, gpu: bool) -> codebuild.Cache | None:
        """The buildspec's ``cache`` paths kept on the build host (LOCAL_CUSTOM_CACHE), where
        CodeBuild supports a local cache: not on the LINUX_GPU_CONTAINER environment, and
        not in a VPC (CodeBuild user guide, "Local caching")."""
        if gpu or self.config.vpc_subnet_ids:
            return None
        return codebuild.Cache.local(codebuild.LocalCacheMode.CUSTOM)

    def _project(self, name: str, role: iam.Role, description: str, buildspec: str, *,
                 privileged: bool, gpu: bool, minutes: int, variables: dict[str, str],
                 arm64: bool = False, cache: codebuild.Cache | None = None
                 ) -> codebuild.Project:
        """A project building from the library source asset with a buildspec from it; its
        role may stage the error document, use the stack key and reach MLflow."""
        if privileged:  # the image build: MEDIUM on x86; ARM on-demand builds run on LARGE
            compute = "LARGE" if arm64 else "MEDIUM"
        else:
            compute = self.config.compute_type
        self.log_groups[name] = log_group = self.storage.log_group(name)
        project = codebuild.Project(
            self.stack, name, role=role, description=description,
            source=codebuild.Source.s3(bucket=self.source.bucket, path=self.source.s3_object_key),
            build_spec=codebuild.BuildSpec.from_source_filename(buildspec),
            environment=codebuild.BuildEnvironment(
                build_image=self._build_image(gpu, arm64), privileged=privileged,
                compute_type=getattr(codebuild.ComputeType, compute),
                environment_variables={
                    k: codebuild.BuildEnvironmentVariable(value=v) for k, v in {
                        "MLFLOW_TRACKING_URI": self.mlflow.tracking_uri,
                        "TRAINSHIP_STAGING_KMS_KEY_ID": self.storage.key.key_arn,
                        # MLflow's telemetry thread gives up without internet and edits
                        # os.environ while other threads copy it (KeyError races)
                        "MLFLOW_DISABLE_TELEMETRY": "true",
                        **variables}.items()}),
            timeout=cdk.Duration.minutes(minutes),
            queued_timeout=cdk.Duration.minutes(limits.BUILD_QUEUED_MINUTES),
            encryption_key=self.storage.key, cache=cache,
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(
                log_group=log_group)))
        allow(role, ["s3:PutObject"], [self.storage.staged("*/error.json")],
              "The error document beside each deployment's script.")
        allow(role, ["s3:GetObject"], [self.storage.staged("*/job.json")],
              "The job document the build is started with (TRAINSHIP_JOB_URI).")
        allow(role, ["kms:Decrypt", "kms:GenerateDataKey"], [self.storage.key.key_arn],
              "The stack key (staging bucket, repository).")
        self.mlflow.access(role)
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
        stack, config = self.stack, self.config
        cfn = project.node.default_child
        assert isinstance(cfn, codebuild.CfnProject)
        cfn.vpc_config = codebuild.CfnProject.VpcConfigProperty(
            vpc_id=config.vpc_id, subnets=config.vpc_subnet_ids,
            security_group_ids=config.vpc_security_group_ids)
        subnet_arns = [f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}:subnet/{sid}"
                       for sid in config.vpc_subnet_ids]
        # its own policy (the role's default policy names the project: a cycle otherwise)
        policy = iam.Policy(stack, f"{project.node.id}VpcPolicy", roles=[role], statements=[
            iam.PolicyStatement(actions=[
                "ec2:CreateNetworkInterface", "ec2:DescribeDhcpOptions",
                "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
                "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcs"],
                resources=["*"]),
            iam.PolicyStatement(
                actions=["ec2:CreateNetworkInterfacePermission"],
                resources=[f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}:"
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

    def _train_project(self) -> codebuild.Project:
        role = self._build_role("TrainRole", "TrainModel builds: read the staged script, "
                                             "reach MLflow, write logs. No ECR, no EKS.")
        self.script_role = self._script_role(role)
        variables = {"TRAINSHIP_ENV_CACHE": "/root/.cache/trainship/envs",
                     "TRAINSHIP_SCRIPT_ROLE_ARN": self.script_role.role_arn}
        if self.mlflow.artifact_key_arn is not None:
            variables["TRAINSHIP_MLFLOW_ARTIFACT_KMS_KEY_ARN"] = self.mlflow.artifact_key_arn
        project = self._project(
            TRAIN.project, role, "trainship TrainModel: run a training script",
            TRAIN.buildspec, privileged=False, gpu=self.config.gpu,
            minutes=limits.TRAIN_BUILD_MINUTES, variables=variables,
            cache=self._local_cache(gpu=self.config.gpu))
        if self.config.gpu:
            acknowledge(role, ("AwsSolutions-IAM5[Resource::*]",
                               "ecr:GetAuthorizationToken (no resource-level permissions) to "
                               "pull the AWS Deep Learning Container GPU build image."))
            acknowledge(project, ("AwsSolutions-CB5", "The GPU build image is AWS's own Deep "
                                                      "Learning Container, pulled by account."))
        allow(role, ["s3:GetObject"], [self.storage.staged("*/train.py")],
              "Each deployment's staged script (the path holds the deployment id).")
        return project

    def _script_role(self, train_role: iam.Role) -> iam.Role:
        """The user's script's own role, assumed only by the training runner.

        The runner (TrainRole) assumes it with a session policy that narrows it to one
        deployment's run and artifact prefixes (trainship.script_access); this policy is
        the ceiling: the MLflow actions a script's logging needs on this one tracking
        server, and the artifact bucket and key. Nothing of the staging bucket, ECR or EKS.
        """
        role = iam.Role(self.stack, "ScriptRole",
                        assumed_by=iam.ArnPrincipal(train_role.role_arn),
                        description="trainship: the training script's own credentials "
                                    "(assumed by the training runner with a session policy)",
                        max_session_duration=cdk.Duration.hours(1))
        allow(train_role, ["sts:AssumeRole"], [role.role_arn],
              "The training runner assumes the script role, and no other.")
        actions = list(script_access.MLFLOW_SCRIPT_ACTIONS)
        if self.mlflow.arn is not None and actions:
            allow(role, actions, [self.mlflow.arn],
                  "The MLflow actions a script's run and model logging need, on this "
                  "one tracking server.")
        self.mlflow.artifact_access(role, list(script_access.S3_OBJECT_ACTIONS),
                                    list(script_access.KMS_ACTIONS))
        return role

    def _image_project(self) -> codebuild.Project:
        role = self._build_role("ImageRole", "BuildImage builds: read the model from MLflow, "
                                             "push to the one repository, write logs.")
        repository = self.storage.repository
        project = self._project(
            IMAGE.project, role, "trainship BuildImage: model image to ECR",
            IMAGE.buildspec, privileged=True, gpu=False,
            minutes=limits.IMAGE_BUILD_MINUTES,
            cache=self._local_cache(gpu=False),
            arm64=self.config.cluster_architecture == "arm64", variables={
                "TRAINSHIP_IMAGE_BUILDER": "docker",
                "TRAINSHIP_IMAGE_REPOSITORY": repository.repository_uri,
                "TRAINSHIP_BASE_IMAGE": self.config.base_image,
                "TRAINSHIP_CLUSTER_ARCH": self.config.cluster_architecture,
                **({"TRAINSHIP_BUILDKIT_IMAGE": self.config.buildkit_image}
                   if self.config.buildkit_image else {})})
        allow(role, ["ecr:GetAuthorizationToken"], ["*"],
              "ecr:GetAuthorizationToken has no resource-level permissions.")
        allow(role, ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
                     "ecr:BatchGetImage", "ecr:PutImage", "ecr:InitiateLayerUpload",
                     "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"],
              [repository.repository_arn], "Push and pull the one model repository.")
        return project

    def _acknowledge_codebuild_defaults(self, project: codebuild.Project,
                                        role: iam.Role) -> None:
        """What CDK grants every project: its own log streams and report groups."""
        cfn = project.node.default_child
        assert isinstance(cfn, cdk.CfnElement)
        name = self.stack.get_logical_id(cfn)
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
