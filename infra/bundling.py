"""The Lambda code asset, built without Docker.

One asset for every function: ``trainship/`` and ``lambdas/`` plus their runtime
dependencies, installed with ``pip install --target`` for the Lambda platform
(manylinux aarch64, the runtime's Python, binary wheels only).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

REPO = Path(__file__).resolve().parents[1]
RUNTIME_PYTHON = "3.14"
# What the handlers import at run time (boto3 comes with the runtime).
LAMBDA_REQUIREMENTS = [
    "aws-lambda-powertools[parser,tracer]==3.37.0",
    "pydantic>=2.7,<3",
    "packaging>=23",
    "pyyaml>=6",
    "mlflow-skinny==3.17.2",
    "sagemaker-mlflow>=0.1",
    "kubernetes==36.0.3",
    "python-dateutil>=2.8,<3",  # botocore's range; kubernetes 37 needs >=3
]
SOURCE_DIRS = ("trainship", "lambdas")
EXCLUDE = ["*", "!trainship", "!trainship/**", "!lambdas", "!lambdas/**", "**/__pycache__",
           "**/*.pyc"]


def copy_sources(output: Path) -> None:
    for name in SOURCE_DIRS:
        shutil.copytree(REPO / name, output / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


@jsii.implements(cdk.ILocalBundling)
class PipTargetBundling:
    """Bundle on this machine: pip --target for the Lambda platform, then the sources."""

    def try_bundle(self, output_dir: str, *, image: Any = None, **kwargs: Any) -> bool:
        output = Path(output_dir)
        subprocess.run([
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--target", str(output), "--platform", "manylinux2014_aarch64",
            "--implementation", "cp", "--python-version", RUNTIME_PYTHON,
            "--only-binary=:all:", "--upgrade",
            # no .pyc: pip would compile them with this machine's interpreter (cpython-311),
            # which the Lambda runtime's Python ignores; they were 92 MB of the 250 MiB
            # unzipped limit ("Lambda quotas": deployment package size)
            "--no-compile", *LAMBDA_REQUIREMENTS], check=True)
        copy_sources(output)
        return True


def lambda_code(mode: str) -> lambda_.Code:
    """``local``: dependencies bundled without Docker; ``none``: sources only (for tests)."""
    if mode == "none":
        return lambda_.Code.from_asset(str(REPO), exclude=EXCLUDE)
    return lambda_.Code.from_asset(str(REPO), exclude=EXCLUDE, bundling=cdk.BundlingOptions(
        image=lambda_.Runtime.PYTHON_3_14.bundling_image,
        local=PipTargetBundling(),
        command=["bash", "-c", "pip install --no-compile --target /asset-output "
                 + " ".join(f"'{r}'" for r in LAMBDA_REQUIREMENTS)
                 + " && cp -r /asset-input/trainship /asset-input/lambdas /asset-output/"],
    ))
