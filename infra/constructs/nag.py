"""cdk-nag acknowledgments, checkov suppressions and the one way the stack grants access."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct


def acknowledge(scope: Construct, *rules: tuple[str, str]) -> None:
    """cdk-nag 3.x acknowledgments, each with its specific reason."""
    cdk.Validations.of(scope).acknowledge(*[
        cdk.Acknowledgment(id=f"AwsSolutions::{rule}", reason=reason) for rule, reason in rules])


def checkov_skip(resource: Construct, *checks: tuple[str, str]) -> None:
    """Checkov's in-template suppressions, each with its justification."""
    cfn = resource.node.default_child if not isinstance(resource, cdk.CfnResource) else resource
    assert isinstance(cfn, cdk.CfnResource)
    cfn.add_metadata("checkov", {"skip": [{"id": cid, "comment": why} for cid, why in checks]})


def nag_notation(stack: cdk.Stack, value: Any) -> str:
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

    return render(stack.resolve(value))


def allow(grantee: iam.IGrantable, actions: list[str], resources: list[str],
          reason: str) -> None:
    """One least-privilege statement; its wildcards acknowledged with the reason."""
    assert isinstance(grantee, Construct), grantee
    stack = cdk.Stack.of(grantee)
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=actions, resources=resources))
    findings = [f"Action::{a}" for a in actions if "*" in a]
    findings += [f"Resource::{n}" for n in (nag_notation(stack, r) for r in resources)
                 if "*" in n]
    scope: Construct = grantee
    if isinstance(grantee, lambda_.Function) and isinstance(grantee.role, iam.Role):
        scope = grantee.role
    acknowledge(scope, *[(f"AwsSolutions-IAM5[{f}]", reason) for f in findings])
