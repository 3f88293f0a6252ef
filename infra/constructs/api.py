"""The API: its function (lambdas.api) and the REST API in front of it."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_stepfunctions as sfn

from infra.api_model import add_gateway_responses, add_request_model
from infra.config import Config
from infra.constructs.builds import Builds
from infra.constructs.functions import Functions
from infra.constructs.nag import acknowledge, allow, checkov_skip
from infra.constructs.storage import Storage
from trainship import openapi
from trainship.models import API_MLFLOW_ENV

HANDLER = "lambdas.api.handler"
TIMEOUT_SECONDS = 29  # API Gateway's integration timeout
MEMORY_MB = 512


class Api:
    """``ApiFunction`` (starts and reads executions, reads build logs) and ``Api``."""

    def __init__(self, stack: cdk.Stack, config: Config, storage: Storage,
                 functions: Functions, builds: Builds, machine: sfn.StateMachine) -> None:
        self.stack = stack
        self.config = config
        self.function = functions.function(
            "Api", HANDLER, functions.role("ApiRole", "the API"), TIMEOUT_SECONDS, MEMORY_MB,
            reserved=config.api_reserved_concurrency or None,
            # MLflow's HTTP retries kept within API Gateway's 29 s (trainship.models)
            extra_env={"STATE_MACHINE_ARN": machine.state_machine_arn, **API_MLFLOW_ENV,
                       "TRAINSHIP_IMAGE_REPOSITORY": storage.repository.repository_uri})
        self._grant(machine, builds)
        # GET /models; POST /models/{name}/rollback checks the registry and the image first
        functions.mlflow.registry_read_access(self.function)
        functions.image_check(self.function)
        self.rest_api = self._rest_api(storage)

    def _grant(self, machine: sfn.StateMachine, builds: Builds) -> None:
        stack = self.stack
        role = self.function.role
        assert role is not None
        execution_arns = (f"arn:{stack.partition}:states:{stack.region}:{stack.account}:"
                          f"execution:{machine.state_machine_name}:*")
        allow(role, ["states:StartExecution", "states:ListExecutions"],
              [machine.state_machine_arn], "Starts and lists this state machine only.")
        allow(role, ["states:DescribeExecution", "states:GetExecutionHistory"],
              [execution_arns], "Reads only executions of this state machine "
                                "(a deployment id is an execution name).")
        # RedriveExecution's resource type is the execution (AWS service authorization
        # reference, Step Functions): POST /deployments/{id}/redrive.
        allow(role, ["states:RedriveExecution"], [execution_arns],
              "Redrives only executions of this state machine (POST "
              "/deployments/{id}/redrive).")
        allow(role, ["logs:GetLogEvents"],
              [log_group.log_group_arn for log_group in builds.log_groups.values()],
              "Reads the build logs of the two projects (GET /deployments/{id}/logs).")

    def _rest_api(self, storage: Storage) -> apigw.RestApi:
        stack, config = self.stack, self.config
        access_logs = storage.log_group("ApiAccess")
        iam_auth = config.api_auth == "iam"
        api = apigw.RestApi(
            stack, "Api", rest_api_name=f"{stack.stack_name}-api",
            description="trainship: POST a training script, get an inference URL",
            cloud_watch_role=True, cloud_watch_role_removal_policy=cdk.RemovalPolicy.DESTROY,
            deploy_options=apigw.StageOptions(
                stage_name="v1", tracing_enabled=True, metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR, data_trace_enabled=False,
                throttling_rate_limit=config.api_throttle_rate,
                throttling_burst_limit=config.api_throttle_burst,
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
        integration = apigw.LambdaIntegration(self.function)
        models = {"application/json": model}
        # the routes are the API's OpenAPI document's (docs/openapi.json): one source
        for method, path, operation in openapi.routes():
            resource = api.root
            for part in path.strip("/").split("/"):
                resource = resource.get_resource(part) or resource.add_resource(part)
            if openapi.takes_deployment_request(operation):  # checked before the function
                resource.add_method(method, integration, request_validator=validator,
                                    request_models=models)
            else:
                resource.add_method(method, integration)
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
        if not iam_auth and self.config.default_auth == "token":
            cdk.Annotations.of(api).add_warning_v2("trainship:apiAuthNoneWithTokens", (
                "trainship:apiAuth is 'none' while models get inference tokens "
                "(trainship:defaultAuth 'token'): anyone who reaches the API reads every "
                "deployment's inference token (GET /deployments/{id}) and can rotate any "
                "model's token. Keep such an API private and network-restricted, or use "
                "apiAuth 'iam' (docs/deploy-to-aws.md, 'Inference tokens')."))
        return api
