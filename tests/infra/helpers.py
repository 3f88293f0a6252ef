"""What the infra tests share: synthesizing the stack and reading its template."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from trainship.pipeline import LAMBDA_STEPS

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

REPO = Path(__file__).resolve().parents[2]
# the stack, its template, its cdk.out
Synth = tuple[Any, dict[str, Any], Path]
CLUSTER_STATES = [state for state, step in LAMBDA_STEPS.items() if step.cluster_access]

# the variant: an existing tracking server in a VPC, arm64 nodes, an internal load balancer
ARTIFACTS = "team-mlflow-artifacts"
ARTIFACT_KEY = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TRACKING_ARN = "arn:aws:sagemaker:eu-west-1:111122223333:mlflow-tracking-server/team"
CERTIFICATE = ("arn:aws:acm:eu-west-1:111122223333:certificate/"
               "12345678-1234-1234-1234-123456789012")
BUILDKIT_COPY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/buildkit:v0.17.3"
VARIANT: dict[str, Any] = dict(
    mlflowTrackingUri=TRACKING_ARN, mlflowArtifactBucket=ARTIFACTS,
    mlflowArtifactKmsKeyArn=ARTIFACT_KEY, vpcId="vpc-0123456789abcdef0",
    vpcSubnetIds=["subnet-0123456789abcdef0"], vpcSecurityGroupIds=["sg-0123456789abcdef0"],
    clusterArchitecture="arm64", loadBalancerScheme="internal",
    loadBalancerSourceRanges=["10.0.0.0/8", "192.168.1.0/24"], apiReservedConcurrency=5,
    trainCompute="gpu", deepLearningContainersAccount="123456789012",
    buildkitImage=BUILDKIT_COPY, servingWorkers=4, defaultAuth="none",
    certificateArn=CERTIFICATE, defaultRollout="all-at-once")


def synth(tmp: Path, **context: Any) -> Synth:
    """Synthesize (cdk-nag runs and must pass); return the stack, its template, cdk.out."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.app import build_app

    ctx = {"trainship:lambdaBundling": "none", **{f"trainship:{k}": v for k, v in context.items()}}
    app = build_app(ctx, outdir=str(tmp))
    app.synth()
    stack = app.node.find_child("Trainship")
    assert isinstance(stack, cdk.Stack)
    return stack, dict(Template.from_stack(stack).to_json()), tmp


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


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def one(template: dict[str, Any], kind: str, prefix: str) -> tuple[str, dict[str, Any]]:
    found = [(k, v["Properties"]) for k, v in resources(template, kind).items()
             if k.startswith(prefix)]
    assert len(found) == 1, (kind, prefix, found)
    return found[0]


def statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted(template: dict[str, Any], role_id: str) -> dict[str, list[Any]]:
    """action -> the resources it is allowed on."""
    out: dict[str, list[Any]] = {}
    for st in statements(template, role_id):
        for action in as_list(st["Action"]):
            out.setdefault(action, []).extend(as_list(st["Resource"]))
    return out


def function_env(template: dict[str, Any], step: str) -> dict[str, Any]:
    _, props = one(template, "AWS::Lambda::Function", f"{step}Function")
    env: dict[str, Any] = props["Environment"]["Variables"]
    return env


def project_env(template: dict[str, Any], prefix: str) -> dict[str, Any]:
    _, props = one(template, "AWS::CodeBuild::Project", prefix)
    return {v["Name"]: v["Value"] for v in props["Environment"]["EnvironmentVariables"]}
