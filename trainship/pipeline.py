"""The pipeline's one table: which states run which code, as CDK and the local stack read it.

The state machine is ``infra/statemachine/deploy.asl.json``; both stacks load that file and
fill its ``${Name}`` placeholders: ``${<State>FunctionArn}`` for each state that invokes a
Lambda, ``${<Project>ProjectName}`` for each state that runs a CodeBuild build. This module
says, for each of those states, what runs there (handler module and its limits, buildspec)
and what each placeholder is called, so no stack keeps its own copy.
tests/unit/test_pipeline_table.py checks the table against the ASL file both ways.

A bottom layer: it imports nothing from trainship.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASL_PATH = REPO / "infra" / "statemachine" / "deploy.asl.json"
# The state machine's name (on AWS prefixed with the stack name: Trainship-TrainAndDeploy).
STATE_MACHINE_NAME = "TrainAndDeploy"
# The execution statuses after which nothing changes (DescribeExecution's status, less
# RUNNING and PENDING_REDRIVE): a deployment's record is final in one of them.
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


@dataclass(frozen=True)
class LambdaStep:
    """A Task state that invokes a Lambda function (``arn:aws:states:::lambda:invoke``)."""

    state: str
    module: str  # lambdas.<module>, whose ``handler`` is the function's entry point
    timeout_seconds: int  # the function's timeout (the Task's TimeoutSeconds is above it)
    memory_mb: int
    # talks to the cluster (EKS API, or the service proxy for the smoke test): the one
    # cluster role, the cluster's settings in its environment, the EKS access entry
    cluster_access: bool
    # a cluster step with rights the deploying steps must not hold (RemoveModel deletes
    # images; both it and RotateToken list executions): its own role and EKS access entry
    # instead of the shared cluster role
    own_role: bool = False

    @property
    def handler(self) -> str:
        return f"{self.module}.handler"

    @property
    def placeholder(self) -> str:
        """The ASL's ``${...}`` name for this function's ARN."""
        return f"{self.state}FunctionArn"


@dataclass(frozen=True)
class BuildStep:
    """A Task state that runs a CodeBuild build (``codebuild:startBuild.sync``)."""

    state: str
    project: str  # the project's construct id on AWS (Train, Image)
    buildspec: str  # relative to the repository root (the build's source)

    @property
    def placeholder(self) -> str:
        """The ASL's ``${...}`` name for the project's name."""
        return f"{self.project}ProjectName"


# In the order the functions are created on AWS (their logical ids do not depend on it).
LAMBDA_STEPS: Mapping[str, LambdaStep] = {step.state: step for step in (
    LambdaStep("ValidateRequest", "lambdas.validate_request", 30, 512, cluster_access=False),
    LambdaStep("RegisterModel", "lambdas.register_model", 300, 1024, cluster_access=False),
    # a rollback's first step (the Route state's "rollback"): the registry and the image
    LambdaStep("PrepareRollback", "lambdas.prepare_rollback", 60, 512, cluster_access=False),
    LambdaStep("DeployModel", "lambdas.deploy_model", 120, 512, cluster_access=True),
    LambdaStep("CheckRollout", "lambdas.check_rollout", 60, 512, cluster_access=True),
    # the smoke test goes through the API server's service proxy: the cluster role
    LambdaStep("SmokeTestModel", "lambdas.smoke_test_model", 120, 512, cluster_access=True),
    # a canary (issue 15): the traffic split and the scrape of /metrics, the cluster role
    LambdaStep("ShiftTraffic", "lambdas.shift_traffic", 120, 512, cluster_access=True),
    LambdaStep("JudgeCanary", "lambdas.judge_canary", 120, 512, cluster_access=True),
    LambdaStep("PromoteModel", "lambdas.promote_model", 120, 512, cluster_access=True),
    LambdaStep("RecordFailure", "lambdas.record_failure", 120, 512, cluster_access=True),
    # a delete (Route: action "delete"): the model's objects, processes, alias and, with
    # purge, its images and registered model
    LambdaStep("RemoveModel", "lambdas.remove_model", 300, 512, cluster_access=True,
               own_role=True),
    # a token rotation (Route: action "rotate-token"): writes the model's auth Secret, and
    # checks under the model's lock that no execution for it runs; its own role, like
    # RemoveModel's, so the deploying steps hold no states:ListExecutions
    LambdaStep("RotateToken", "lambdas.rotate_token", 60, 512, cluster_access=True,
               own_role=True),
    # fails the execution with the recorded error, or (redriven) resumes the failed step
    LambdaStep("DeploymentFailed", "lambdas.deployment_failed", 10, 256, cluster_access=False),
)}
BUILD_STEPS: Mapping[str, BuildStep] = {step.state: step for step in (
    BuildStep("TrainModel", "Train", "buildspecs/train.yml"),
    BuildStep("BuildImage", "Image", "buildspecs/image.yml"),
)}


# Redriving a caught failure (docs/reliability.md, "Redrive"): every Task's Catch goes to
# ``<State>Caught``, a Pass state that records the state, then RecordFailure, then the
# DeploymentFailed Task, the state a redrive restarts. Redriven, it resumes here: the failed
# state itself, or DeployModel for a state after it (RecordFailure removed the rollout).
# ValidateRequest is absent: its failures are the request's and fail the same way again.
CAUGHT_SUFFIX = "Caught"
FAILED_STATE = "DeploymentFailed"
RESUME_AT: Mapping[str, str] = {
    "TrainModel": "TrainModel",
    "RegisterModel": "RegisterModel",
    "BuildImage": "BuildImage",
    "DeployModel": "DeployModel",
    "CheckRollout": "DeployModel",
    "SmokeTestModel": "DeployModel",
    # a canary starts over: RecordFailure discarded the new version, the live one has all
    # of the traffic again
    "ShiftTraffic": "DeployModel",
    "JudgeCanary": "DeployModel",
    "PromoteModel": "DeployModel",
    "RemoveModel": "RemoveModel",  # idempotent: a redriven delete removes what is left
    "PrepareRollback": "PrepareRollback",  # it checks the rollback again
    "RotateToken": "RotateToken",  # a new token again (the failed one was never delivered)
}


def substitutions(function_arns: Mapping[str, str],
                  project_names: Mapping[str, str]) -> dict[str, str]:
    """The ASL's placeholders filled: function ARNs and project names, each by state name.

    Both mappings must cover their table exactly (a missing state would leave a ``${...}``
    in the definition; an unknown one is a typo).
    """
    for given, table in ((function_arns, LAMBDA_STEPS), (project_names, BUILD_STEPS)):
        if set(given) != set(table):
            raise ValueError(f"substitutions for {sorted(given)}, the pipeline has "
                             f"{sorted(table)}")
    return {**{LAMBDA_STEPS[state].placeholder: arn for state, arn in function_arns.items()},
            **{BUILD_STEPS[state].placeholder: name for state, name in project_names.items()}}
