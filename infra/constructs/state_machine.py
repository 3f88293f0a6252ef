"""TrainAndDeploy: the ASL file both stacks run, with this stack's functions and projects."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn

from infra.constructs.builds import Builds
from infra.constructs.functions import Functions
from infra.constructs.nag import acknowledge
from infra.constructs.storage import Storage
from trainship.pipeline import ASL_PATH, STATE_MACHINE_NAME, substitutions

# The managed rule Step Functions creates for codebuild:startBuild.sync.
CODEBUILD_EVENTS_RULE = "StepFunctionsGetEventForCodeBuildStartBuildRule"


def state_machine(stack: cdk.Stack, storage: Storage, functions: Functions,
                  builds: Builds) -> sfn.StateMachine:
    """``StateMachine`` and its explicit role: invoke its Lambdas, run its builds."""
    log_group = storage.log_group("StateMachine")
    role = iam.Role(stack, "StateMachineRole",
                    assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
                    description=f"{STATE_MACHINE_NAME}: invoke its Lambdas, run its builds")
    role.add_to_policy(iam.PolicyStatement(
        actions=["lambda:InvokeFunction"],
        resources=[arn for fn in functions.steps.values()
                   for arn in (fn.function_arn, f"{fn.function_arn}:*")]))
    role.add_to_policy(iam.PolicyStatement(
        actions=["codebuild:StartBuild", "codebuild:StopBuild", "codebuild:BatchGetBuilds"],
        resources=[project.project_arn for project in builds.projects.values()]))
    role.add_to_policy(iam.PolicyStatement(
        actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
        resources=[f"arn:{stack.partition}:events:{stack.region}:{stack.account}:rule/"
                   f"{CODEBUILD_EVENTS_RULE}"]))
    machine = sfn.StateMachine(
        stack, "StateMachine", state_machine_name=f"{stack.stack_name}-{STATE_MACHINE_NAME}",
        definition_body=sfn.DefinitionBody.from_string(ASL_PATH.read_text()),
        definition_substitutions=substitutions(
            {state: fn.function_arn for state, fn in functions.steps.items()},
            {state: project.project_name for state, project in builds.projects.items()}),
        role=role, tracing_enabled=True,
        # No `timeout=` here: with a definition body from a string CDK drops it. The
        # execution timeout is the ASL's top-level TimeoutSeconds (infra/limits.py).
        # Without execution data: the log group gets each event (state entered/exited,
        # task failed, ...) but not the states' input and output ("includeExecutionData:
        # determines whether execution data is included in your log", Step Functions API
        # LoggingConfiguration), which carry inference and smoke-test tokens
        # (model_auth, result.inference_token, TokenRotation). The execution history
        # (`trainship status`, DescribeExecution) still has them, behind IAM.
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL,
                            include_execution_data=False))
    fn_ids = [stack.resolve(fn.function_arn)["Fn::GetAtt"][0]
              for fn in functions.steps.values()]
    acknowledge(role, *[(f"AwsSolutions-IAM5[Resource::<{fid}.Arn>:*]",
                         "Any version or alias of this state machine's own function.")
                        for fid in fn_ids],
                ("AwsSolutions-IAM5[Resource::*]",
                 "CloudWatch Logs delivery and X-Ray actions have no resource-level "
                 "permissions (added by CDK for logging and tracing)."))
    return machine
