"""The Lambda functions of the pipeline's Lambda states (trainship.pipeline), their roles."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_eks as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from infra import limits
from infra.bundling import lambda_code
from infra.config import Config
from infra.constructs.mlflow import Mlflow
from infra.constructs.nag import acknowledge, allow, checkov_skip
from infra.constructs.storage import Storage
from trainship.pipeline import LAMBDA_STEPS, STATE_MACHINE_NAME

LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_14
CLUSTER_STATES = [step.state for step in LAMBDA_STEPS.values()
                  if step.cluster_access and not step.own_role]


class Functions:
    """One function per Lambda state (``<State>Function``), all from one code asset.

    The states that talk to the cluster share ``ClusterRole`` (the one principal with an
    EKS access entry); every other function has its own ``<State>Role``.
    """

    def __init__(self, stack: cdk.Stack, config: Config, storage: Storage,
                 mlflow: Mlflow) -> None:
        self.stack = stack
        self.config = config
        self.storage = storage
        self.mlflow = mlflow
        self.vpc_policies: dict[str, iam.Policy] = {}
        self.code = lambda_code(config.lambda_bundling)
        self.cluster_role = self.role("ClusterRole", f"{', '.join(CLUSTER_STATES[:-1])} and "
                                                     f"{CLUSTER_STATES[-1]}: the EKS side")
        cluster_env = {
            "TRAINSHIP_LB_SCHEME": config.load_balancer_scheme,
            "TRAINSHIP_LB_SOURCE_RANGES": ",".join(config.load_balancer_source_ranges),
            "TRAINSHIP_CLUSTER_ARCH": config.cluster_architecture,
            # DeployModel renders it into the pods' --workers (and RecordFailure's rollback)
            "TRAINSHIP_SERVING_WORKERS": str(config.serving_workers),
            "TRAINSHIP_IMAGE_REPOSITORY": storage.repository.repository_uri,
            # DeployModel: a new model's auth when its request names none (defaultAuth)
            "TRAINSHIP_DEFAULT_AUTH": config.default_auth,
            # DeployModel: canary or all at once when the request names no rollout
            "TRAINSHIP_DEFAULT_ROLLOUT": config.default_rollout,
            "TRAINSHIP_LB_CERTIFICATE_ARN": config.certificate_arn,  # "": plain HTTP
        }
        # PrepareRollback (and the API) check that a version's image is still in ECR
        image_env = {"TRAINSHIP_IMAGE_REPOSITORY": storage.repository.repository_uri}
        self.steps: dict[str, lambda_.Function] = {}
        # a cluster step with a role of its own (RemoveModel): its own access entry too
        self.own_cluster_roles: dict[str, iam.Role] = {}
        for state, step in LAMBDA_STEPS.items():
            cluster = step.cluster_access
            role = self.cluster_role if cluster and not step.own_role else self.role(
                f"{state}Role", state)
            if cluster and step.own_role:
                self.own_cluster_roles[state] = role
            self.steps[state] = self.function(
                state, step.handler, role, step.timeout_seconds, step.memory_mb,
                extra_env=cluster_env if cluster else
                image_env if state == "PrepareRollback" else None)
        self._grant_step_permissions()
        self._grant_removal()
        self._grant_rotation()
        self._eks_access()

    def role(self, name: str, what: str) -> iam.Role:
        """A function role; in a VPC with its own ENI policy, which its functions wait for."""
        role = iam.Role(self.stack, name,
                        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description=f"trainship Lambda: {what}")
        if self.config.vpc_subnet_ids:
            # its own policy, which the functions wait for: Lambda checks the ENI
            # permissions when a function is created in a VPC
            policy = iam.Policy(self.stack, f"{name}VpcPolicy", roles=[role], statements=[
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

    def function(self, name: str, handler: str, role: iam.Role, timeout: int, memory: int, *,
                 reserved: int | None = None,
                 extra_env: dict[str, str] | None = None) -> lambda_.Function:
        """``<name>Function`` with its log group, the stack's settings in its environment."""
        config, storage = self.config, self.storage
        log_group = storage.log_group(f"{name}Function")
        env = {
            "POWERTOOLS_SERVICE_NAME": "trainship",
            "POWERTOOLS_METRICS_NAMESPACE": "trainship",
            # X-Ray gets no handler responses: they carry inference tokens (a deployment's
            # result, a rotation, GET /deployments/{id}); lambdas/ sets it too
            "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
            "TRAINSHIP_STAGING_URI": storage.staging.s3_url_for_object("scripts"),
            "MLFLOW_TRACKING_URI": self.mlflow.tracking_uri,
            "TRAINSHIP_CLUSTER": "kubernetes",
            "TRAINSHIP_EKS_CLUSTER": config.eks_cluster_name,
            "TRAINSHIP_NAMESPACE": config.eks_namespace,
            "TRAINSHIP_SERVICE_TYPE": config.service_type,
            "TRAINSHIP_STAGING_KMS_KEY_ID": storage.key.key_arn,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "TRAINSHIP_ROLLOUT_TIMEOUT_SECONDS": str(limits.ROLLOUT_TIMEOUT_SECONDS),
            "TRAINSHIP_ROLLOUT_POLL_SECONDS": str(limits.ROLLOUT_POLL_SECONDS),
            **(extra_env or {}),
        }
        function = lambda_.Function(
            self.stack, f"{name}Function", code=self.code, handler=handler,
            runtime=LAMBDA_RUNTIME, architecture=lambda_.Architecture.ARM_64,
            role=role, timeout=cdk.Duration.seconds(timeout), memory_size=memory,
            tracing=lambda_.Tracing.ACTIVE, logging_format=lambda_.LoggingFormat.JSON,
            log_group=log_group, environment=env, environment_encryption=storage.key,
            reserved_concurrent_executions=reserved,
            description=f"trainship {name}")
        log_group.grant_write(role)
        vpc_policy = self.vpc_policies.get(role.node.id)
        if vpc_policy is not None:
            function.node.add_dependency(vpc_policy)
        if config.vpc_subnet_ids:
            cfn = function.node.default_child
            assert isinstance(cfn, lambda_.CfnFunction)
            cfn.vpc_config = lambda_.CfnFunction.VpcConfigProperty(
                subnet_ids=config.vpc_subnet_ids,
                security_group_ids=config.vpc_security_group_ids)
        checkov_skip(function,
                     ("CKV_AWS_116", "Invoked synchronously by Step Functions / API Gateway, "
                                     "which own retries and failures; a DLQ would never fill."),
                     *(() if config.vpc_subnet_ids else (
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
        f, storage = self.steps, self.storage
        allow(f["ValidateRequest"], ["s3:PutObject"],
              [storage.staged("*/train.py"), storage.staged("*/job.json")],
              "Stages each deployment's script and job document under its own id.")
        # RegisterModel restages the job document BuildImage reads (TRAINSHIP_JOB_URI)
        allow(f["RegisterModel"], ["s3:PutObject"], [storage.staged("*/job.json")],
              "Restages each deployment's job document for the image build.")
        for step in ("ValidateRequest", "RegisterModel"):
            allow(f[step], ["kms:GenerateDataKey"], [storage.key.key_arn],
                  "The staging bucket's key (staged objects name it).")
        allow(f["RecordFailure"], ["s3:GetObject"], [storage.staged("*/error.json")],
              "Reads the error document a failed build staged.")
        allow(f["RecordFailure"], ["kms:Decrypt"], [storage.key.key_arn],
              "The staging bucket's key.")
        # Without s3:ListBucket, S3 answers a GetObject for a missing key with 403, not
        # 404 (Amazon S3 API reference, GetObject, "Permissions"): a build that failed
        # before staging its error document would look like a permission error. S3 checks
        # ListBucket with the requested key as s3:prefix, so the condition keeps the grant
        # to the staged objects.
        f["RecordFailure"].add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[storage.staging.bucket_arn],
            conditions={"StringLike": {"s3:prefix": ["scripts/*"]}}))
        allow(f["PromoteModel"], ["ecr:BatchGetImage", "ecr:PutImage", "ecr:DescribeImages"],
              [storage.repository.repository_arn],
              "Pins the serving and rollback images (live-/previous- tags) so the "
              "lifecycle policy keeps them.")
        self.image_check(f["PrepareRollback"])
        # the job document the rolled-back version's deployment staged (its requirements,
        # replicas, resources); a missing one (403 without ListBucket) is read as missing
        allow(f["PrepareRollback"], ["s3:GetObject"], [storage.staged("*/job.json")],
              "Reads the job document of the version's own deployment.")
        allow(f["PrepareRollback"], ["kms:Decrypt"], [storage.key.key_arn],
              "The staging bucket's key.")
        for step in ("RegisterModel", "SmokeTestModel", "PromoteModel"):
            self.mlflow.access(f[step])
        self.mlflow.registry_read_access(f["PrepareRollback"])

    def image_check(self, grantee: lambda_.Function) -> None:
        """ecr:DescribeImages on the repository: does a version's image still exist (a
        rollback serves it again without a build)."""
        allow(grantee, ["ecr:DescribeImages"], [self.storage.repository.repository_arn],
              "Checks that a rolled-back version's image still exists.")

    def _grant_removal(self) -> None:
        """RemoveModel (a delete; trainship.removal): its role alone may delete images, and it
        checks again, under the model's lock, that no execution for the model runs."""
        storage = self.storage
        remove = self.steps["RemoveModel"]
        # BatchDeleteImage by digest deletes the image with all its tags (ECR API reference,
        # BatchDeleteImage); ListImages finds the model's images that never served
        allow(remove, ["ecr:ListImages", "ecr:BatchDeleteImage"],
              [storage.repository.repository_arn],
              "A purge (trainship delete --purge) deletes the model's images.")
        self.mlflow.access(remove)
        self.running_check(remove)

    def _grant_rotation(self) -> None:
        """RotateToken (a token rotation; trainship.token_rotation): reads which version
        serves where from the registry, writes the model's auth Secret through its own EKS
        access entry, and checks under the model's lock that no execution for it runs."""
        rotate = self.steps["RotateToken"]
        self.mlflow.registry_read_access(rotate)
        self.running_check(rotate)

    def running_check(self, grantee: lambda_.Function) -> None:
        """ListExecutions/DescribeExecution on this state machine: does an execution for
        the model run (checked again under the model's lock)?"""
        stack = self.stack
        # The state machine's ARN from its name: the state machine's definition names this
        # function, so a reference to the state machine here would be a cycle.
        machine = f"{stack.stack_name}-{STATE_MACHINE_NAME}"
        machine_arn = (f"arn:{stack.partition}:states:{stack.region}:{stack.account}:"
                       f"stateMachine:{machine}")
        grantee.add_environment("STATE_MACHINE_ARN", machine_arn)
        allow(grantee, ["states:ListExecutions"], [machine_arn],
              "Lists the executions of this state machine (one of the model's still runs?).")
        allow(grantee, ["states:DescribeExecution"],
              [f"arn:{stack.partition}:states:{stack.region}:{stack.account}:execution:"
               f"{machine}:*"],
              "Reads a running execution's input: which model it is for.")

    def _eks_access(self) -> None:
        stack, config = self.stack, self.config
        cluster_arn = (f"arn:{stack.partition}:eks:{stack.region}:{stack.account}:cluster/"
                       f"{config.eks_cluster_name}")
        # DeployModel's functions share the cluster role and its access entry; RemoveModel
        # has the same access through an entry of its own ("An IAM principal can't be
        # included in more than one access entry": "Create access entries", Amazon EKS
        # User Guide; one entry per role)
        for name, role in (("Deploy", self.cluster_role),
                           *((state.removesuffix("Model"), role)
                             for state, role in self.own_cluster_roles.items())):
            role.add_to_policy(iam.PolicyStatement(
                actions=["eks:DescribeCluster"], resources=[cluster_arn]))
            eks.CfnAccessEntry(
                stack, f"{name}Access", cluster_name=config.eks_cluster_name,
                principal_arn=role.role_arn, type="STANDARD",
                access_policies=[eks.CfnAccessEntry.AccessPolicyProperty(
                    policy_arn=f"arn:{stack.partition}:eks::aws:cluster-access-policy/"
                               "AmazonEKSEditPolicy",
                    access_scope=eks.CfnAccessEntry.AccessScopeProperty(
                        type="namespace", namespaces=[config.eks_namespace]))])
