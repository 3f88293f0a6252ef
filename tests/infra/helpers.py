"""What the infra tests share: synthesizing the stack and reading its template."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

# the stack, its template, its cdk.out
Synth = tuple[Any, dict[str, Any], Path]


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
