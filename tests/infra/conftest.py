from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")


def synth(tmp: Path, **context: Any) -> tuple[Any, dict[str, Any], Path]:
    """Synthesize (cdk-nag runs and must pass); return the stack, its template, cdk.out."""
    from aws_cdk.assertions import Template

    from infra.app import build_app

    ctx = {"trainship:lambdaBundling": "none", **{f"trainship:{k}": v for k, v in context.items()}}
    app = build_app(ctx, outdir=str(tmp))
    app.synth()
    stack = app.node.find_child("Trainship")
    return stack, Template.from_stack(stack).to_json(), tmp


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], Path]:
    return synth(tmp_path_factory.mktemp("cdk.out"))
