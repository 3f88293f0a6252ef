"""The Lambda code asset, built without Docker.

One asset for every function: ``trainship/`` and ``lambdas/`` plus their runtime
dependencies, installed with ``pip install --target`` for the Lambda platform
(manylinux aarch64, the runtime's Python, binary wheels only).

The dependencies come from pyproject.toml (:func:`lambda_requirements`), not a list here,
at the versions of requirements.lock (pip's ``--constraint``: the lock pins what is
installed and installs nothing itself). pip evaluates the lock's environment markers for the
interpreter it runs on, not for ``--platform``/``--python-version``; the lock's markers are
only win32/PyPy ones today, which a Linux CPython answers as the Lambda runtime does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
LOCK = REPO / "requirements.lock"
RUNTIME_PYTHON = "3.14"
# What the handlers import at run time: the library's dependencies and these extras ...
LAMBDA_EXTRAS = ("lambda", "sagemaker")
# (the [aws] extra included: boto3 and botocore are bundled at pyproject's bounds, not
# taken from the runtime, whose copy changes with the runtime version and Region; AWS's
# "Understanding how Lambda manages runtime version updates" says to deploy boto3 and
# botocore together in the package. sagemaker-mlflow and aws-xray-sdk require them anyway.)
# ... with MLflow's client-only distribution (no tracking server, UI or their
# dependencies), at the library's own version.
CLIENT_ONLY = {"mlflow": "mlflow-skinny"}
SOURCE_DIRS = ("trainship", "lambdas")
# CDK's glob excludes match no dot-named entry with "*" (minimatch without dot): the tool
# caches' marker files (.venv/.installed-*, .mypy_cache/.gitignore) entered the asset and
# its hash, hence ".*" (at every depth: a dotfile under trainship/ is left out too)
EXCLUDE = ["*", ".*", "!trainship", "!trainship/**", "!lambdas", "!lambdas/**",
           "**/__pycache__", "**/*.pyc"]
# bundled: the lock too, so that its change changes the source hash (and the asset); the
# bundle itself holds only what the bundling writes (the dependencies and SOURCE_DIRS)
BUNDLED_EXCLUDE = [*EXCLUDE[:-2], f"!{LOCK.name}", *EXCLUDE[-2:]]


def lambda_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The Lambda bundle's requirements, from the project's dependencies and extras.

    ``<project>[extra]`` references are expanded (except the runtime-provided extras);
    each requirement is kept as written but for the CLIENT_ONLY renames, once (pip
    installs what satisfies every line of a name).
    """
    project = tomllib.loads(pyproject.read_text())["project"]
    own_name = canonicalize_name(project["name"])
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    out: list[str] = []

    def add(requirements: Iterable[str], seen_extras: frozenset[str]) -> None:
        for text in requirements:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            if name == own_name:
                for extra in sorted(set(requirement.extras) - seen_extras):
                    add(extras[extra], seen_extras | {extra})
                continue
            if name in CLIENT_ONLY:
                requirement.name, requirement.extras = CLIENT_ONLY[name], set()
                text = str(requirement)
            if text.strip() not in out:
                out.append(text.strip())

    add(project.get("dependencies", []), frozenset())
    for extra in LAMBDA_EXTRAS:
        add(extras[extra], frozenset({extra}))
    return out


# what the copy of SOURCE_DIRS leaves out: the same as EXCLUDE (dot-named entries too), so
# the bundled and the unbundled asset carry the same source files
SOURCE_IGNORE = shutil.ignore_patterns(".*", "__pycache__", "*.pyc")


def copy_sources(output: Path) -> None:
    for name in SOURCE_DIRS:
        shutil.copytree(REPO / name, output / name, dirs_exist_ok=True, ignore=SOURCE_IGNORE)


@jsii.implements(cdk.ILocalBundling)
class PipTargetBundling:
    """Bundle on this machine: pip --target for the Lambda platform, then the sources."""

    def __init__(self, requirements: list[str], constraints: Path = LOCK) -> None:
        self.requirements = requirements
        self.constraints = constraints

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
            "--no-compile", "--constraint", str(self.constraints), *self.requirements],
            check=True)
        copy_sources(output)
        return True


def lambda_code(mode: str) -> lambda_.Code:
    """``local``: dependencies bundled without Docker; ``none``: sources only (for tests)."""
    if mode == "none":
        return lambda_.Code.from_asset(str(REPO), exclude=EXCLUDE)
    requirements = lambda_requirements()
    bundling = cdk.BundlingOptions(
        image=lambda_.Runtime.PYTHON_3_14.bundling_image,
        local=PipTargetBundling(requirements),
        command=["bash", "-c", "pip install --no-compile --target /asset-output "
                 f"--constraint /asset-input/{LOCK.name} "
                 + " ".join(f"'{r}'" for r in requirements)
                 + " && cp -r /asset-input/trainship /asset-input/lambdas /asset-output/"],
    )
    return lambda_.Code.from_asset(str(REPO), exclude=BUNDLED_EXCLUDE, bundling=bundling)
