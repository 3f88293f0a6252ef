"""The buildspecs' install phase (buildspecs/install.sh): trainship from the build's source
with the extras the build needs, pinned by requirements.lock."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "buildspecs" / "install.sh"
ECR = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/trainship-models"


def pip_args(tmp_path: Path, **env: str) -> list[str]:
    """What install.sh asks pip for (python3 is a stub that prints its arguments)."""
    stub = tmp_path / "bin" / "python3"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    stub.chmod(0o755)
    proc = subprocess.run(["sh", str(INSTALL)], capture_output=True, text=True, check=True,
                          env={"PATH": f"{stub.parent}:{os.environ['PATH']}",
                               "CODEBUILD_SRC_DIR": "/src", **env})
    return proc.stdout.splitlines()


@pytest.mark.parametrize(("env", "target"), [
    ({}, "/src"),
    ({"MLFLOW_TRACKING_URI": "http://mlflow:5000"}, "/src"),
    ({"TRAINSHIP_IMAGE_REPOSITORY": "127.0.0.1:5000/trainship-models"}, "/src"),
    ({"MLFLOW_TRACKING_URI": "arn:aws:sagemaker:eu-west-1:111122223333:mlflow-tracking-server/t"},
     "/src[sagemaker]"),
    ({"TRAINSHIP_SCRIPT_ROLE_ARN": "arn:aws:iam::111122223333:role/script"}, "/src[aws]"),
    ({"TRAINSHIP_IMAGE_REPOSITORY": ECR}, "/src[aws]"),
    ({"MLFLOW_TRACKING_URI": "arn:aws:sagemaker:eu-west-1:111122223333:mlflow-tracking-server/t",
      "TRAINSHIP_IMAGE_REPOSITORY": ECR}, "/src[sagemaker,aws]"),
])
def test_the_extras_follow_the_build(tmp_path: Path, env: dict[str, str], target: str) -> None:
    assert pip_args(tmp_path, **env) == ["-m", "pip", "install", "--quiet", "-c",
                                         "/src/requirements.lock", target]


@pytest.mark.parametrize("name", ["train", "image"])
def test_both_builds_install_with_it(name: str) -> None:
    spec = yaml.safe_load((REPO / "buildspecs" / f"{name}.yml").read_text())
    commands = spec["phases"]["install"]["commands"]
    assert commands == ['python3 -c "import trainship" 2>/dev/null || '
                        'sh "${CODEBUILD_SRC_DIR}/buildspecs/install.sh"']
    # no package is installed by name outside the lock
    assert "pip install" not in (REPO / "buildspecs" / f"{name}.yml").read_text()
