"""The Lambda bundle's requirements come from pyproject.toml: the library's dependencies
and its [lambda] and [sagemaker] extras, less what the runtime brings, with MLflow's
client-only distribution."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra.bundling import (
    LAMBDA_EXTRAS,
    PYPROJECT,
    REPO,
    SOURCE_DIRS,
    copy_sources,
    lambda_requirements,
)


def names(requirements: list[str]) -> list[str]:
    return [canonicalize_name(Requirement(r).name) for r in requirements]


def test_the_bundle_is_the_library_and_its_lambda_extras() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = project["optional-dependencies"]
    # [lambda] names trainship[aws]: the SDK is bundled too
    declared = [*project["dependencies"], *(r for e in LAMBDA_EXTRAS for r in extras[e]),
                *extras["aws"]]
    expected = {canonicalize_name(Requirement(r).name) for r in declared} - {"trainship"}
    expected = expected - {"mlflow"} | {"mlflow-skinny"}
    got = names(lambda_requirements())
    assert set(got) == expected
    assert len(got) == len(set(got))
    # the handlers' own needs, whatever pyproject groups them under
    assert {"aws-lambda-powertools", "kubernetes", "pydantic", "sagemaker-mlflow"} <= set(got)


def test_mlflow_is_the_client_at_the_library_version() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    library = next(Requirement(r) for r in project["dependencies"]
                   if canonicalize_name(Requirement(r).name) == "mlflow")
    bundled = next(Requirement(r) for r in lambda_requirements()
                   if canonicalize_name(Requirement(r).name) == "mlflow-skinny")
    assert bundled.specifier == library.specifier and str(library.specifier)
    assert "mlflow" not in names(lambda_requirements())


def test_the_sdk_is_bundled_at_pyprojects_bounds() -> None:
    """boto3 and botocore go into the bundle together, with the [aws] extra's bounds: the
    runtime's copy varies by runtime version and Region, and AWS says to deploy the two
    together (lambda/latest/dg/runtimes-update.html)."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    aws = project["optional-dependencies"]["aws"]
    bundled = lambda_requirements()
    assert aws and all(requirement in bundled for requirement in aws)
    assert {"boto3", "botocore"} <= set(names(bundled))


def test_derivation_rules(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("""
[project]
name = "Trainship"
dependencies = ["mlflow[extras]==3.1; python_version >= '3.10'", "pyyaml>=6"]
[project.optional-dependencies]
aws = ["boto3>=1"]
k8s = ["kubernetes==36.0.3", "trainship[k8s]"]
lambda = ["trainship[aws,k8s]", "pyyaml>=6", "powertools==3"]
sagemaker = ["sagemaker-mlflow>=0.1"]
""")
    assert lambda_requirements(pyproject) == [
        'mlflow-skinny==3.1; python_version >= "3.10"', "pyyaml>=6", "boto3>=1",
        "kubernetes==36.0.3", "powertools==3", "sagemaker-mlflow>=0.1"]


def test_the_bundled_sources_are_the_tracked_sources_less_dotfiles(tmp_path: Path) -> None:
    """The local bundling copies what the unbundled asset (EXCLUDE) carries: no dot-named
    file or directory at any depth, no byte code; every tracked source file is there."""
    (REPO / "trainship" / ".probe-dotfile").write_text("left out")
    try:
        copy_sources(tmp_path)
    finally:
        (REPO / "trainship" / ".probe-dotfile").unlink()
    copied = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert not [p for p in copied if any(part.startswith(".") for part in p.split("/"))]
    assert not [p for p in copied if p.endswith(".pyc")]
    tracked = subprocess.run(["git", "ls-files", *SOURCE_DIRS], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    assert set(tracked) <= copied
