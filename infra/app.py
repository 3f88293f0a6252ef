"""The CDK app: `cdk synth` / `cdk deploy`, or `python -m infra.app` (what `make synth` runs).

Context comes from cdk.json (read here too when the CDK CLI is not the caller), then
`-c key=value`. cdk-nag's AwsSolutions pack runs at synth: any unacknowledged finding
stops the synth.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import Config
from infra.stack import TrainshipStack

REPO = Path(__file__).resolve().parents[1]


def file_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((REPO / "cdk.json").read_text()).get("context", {})
    return context


def build_app(context: dict[str, Any] | None = None, outdir: str | None = None) -> cdk.App:
    merged = {**file_context(), **(context or {})}
    if os.environ.get("CDK_CONTEXT_JSON"):  # the CDK CLI passes cdk.json and -c values here
        merged.update(json.loads(os.environ["CDK_CONTEXT_JSON"]))
    app = cdk.App(context=merged, outdir=outdir)
    config = Config.from_context(app.node.try_get_context)
    TrainshipStack(app, str(app.node.try_get_context("trainship:stackName") or "Trainship"),
                   config=config, description="trainship: training script to inference URL",
                   env=cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
                                       region=os.environ.get("CDK_DEFAULT_REGION")))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


if __name__ == "__main__":
    # the CDK CLI sets CDK_OUTDIR; `make synth` runs this module directly
    build_app(outdir=os.environ.get("CDK_OUTDIR", str(REPO / "cdk.out"))).synth()
