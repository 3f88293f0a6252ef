"""The buildspecs' install phase (buildspecs/install.sh): trainship from the build's source
with the extras the build needs, pinned by requirements.lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainship.names import ECR_HOST

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "buildspecs" / "install.sh"
ECR = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/trainship-models"
FIPS = "111122223333.dkr.ecr-fips.us-east-1.amazonaws.com/trainship-models"
DUAL_STACK = "111122223333.dkr-ecr.eu-west-1.on.aws/trainship-models"


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
    ({"TRAINSHIP_IMAGE_REPOSITORY": FIPS}, "/src[aws]"),
    ({"TRAINSHIP_IMAGE_REPOSITORY": DUAL_STACK}, "/src[aws]"),
    ({"MLFLOW_TRACKING_URI": "arn:aws:sagemaker:eu-west-1:111122223333:mlflow-tracking-server/t",
      "TRAINSHIP_IMAGE_REPOSITORY": ECR}, "/src[sagemaker,aws]"),
])
def test_the_extras_follow_the_build(tmp_path: Path, env: dict[str, str], target: str) -> None:
    args = pip_args(tmp_path, **env)
    # -c: the lock less what the image has (lock_constraints.py wrote it to a temporary file)
    assert args[:5] == ["-m", "pip", "install", "--quiet", "-c"] and args[6:] == [target]
    assert Path(args[5]).name != "requirements.lock"


LOCK_CONSTRAINTS = REPO / "buildspecs" / "lock_constraints.py"


def constraints_for(python: Path, lock: Path) -> list[str]:
    return subprocess.run([str(python), str(LOCK_CONSTRAINTS), str(lock)], capture_output=True,
                          text=True, check=True).stdout.splitlines()


def test_the_constraints_are_the_whole_lock_for_an_empty_python(tmp_path: Path) -> None:
    """A Python with no packages (a venv without pip) gets every pin of the lock."""
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(tmp_path / "empty")],
                   check=True)
    lock = REPO / "requirements.lock"
    pins = [line for line in lock.read_text().splitlines() if line and not line.startswith("#")]
    assert constraints_for(tmp_path / "empty" / "bin" / "python3", lock) == pins


def test_what_the_image_has_stays_as_the_image_has_it(tmp_path: Path) -> None:
    """A build image's own packages (here: this project's venv, which has all of them under
    other spellings of their names) are left out, so pip keeps their versions; a package
    the image lacks keeps its pin."""
    lock = tmp_path / "requirements.lock"
    lock.write_text("# made by hand\nPyYAML==1.0\nmlflow_skinny==1.0\n"
                    "not-a-package-anyone-has==1.0 ; python_version >= '3.11'\n")
    venv_python = Path(sys.executable)
    assert constraints_for(venv_python, lock) == [
        "not-a-package-anyone-has==1.0 ; python_version >= '3.11'"]


@pytest.mark.parametrize("name", ["train", "image"])
def test_both_builds_install_with_it(name: str) -> None:
    spec = yaml.safe_load((REPO / "buildspecs" / f"{name}.yml").read_text())
    commands = spec["phases"]["install"]["commands"]
    assert commands == ['python3 -c "import trainship" 2>/dev/null || '
                        'sh "${CODEBUILD_SRC_DIR}/buildspecs/install.sh"']
    # no package is installed by name outside the lock
    assert "pip install" not in (REPO / "buildspecs" / f"{name}.yml").read_text()


@pytest.mark.parametrize("repository", [ECR, FIPS, DUAL_STACK])
def test_the_script_and_the_image_login_agree_on_what_is_ecr(repository: str) -> None:
    """install.sh's shell patterns and the registry login's ECR_HOST name the same hosts."""
    assert ECR_HOST.match(repository.split("/", 1)[0])
