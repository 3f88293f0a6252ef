"""requirements.lock fits pyproject.toml: every requirement of the library and its extras
(what make venv, the buildspecs and the Lambda bundle install) is met by its locked
version, and every line of the lock pins one exact version. Offline: `make lock` rewrites
the lock (with PyPI) when this fails."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from trainship.serving import REQUIREMENTS as SERVICE_REQUIREMENTS

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
PYPROJECT = REPO / "pyproject.toml"
# where the lock is installed: Linux CPython (the venv, CodeBuild, the image: 3.11+; the
# Lambda runtime: 3.14)
ENVIRONMENTS = [{**default_environment(), "sys_platform": "linux", "os_name": "posix",
                 "platform_system": "Linux", "implementation_name": "cpython",
                 "platform_python_implementation": "CPython", "python_version": version,
                 "python_full_version": f"{version}.0"} for version in ("3.11", "3.14")]


def locked(lock_text: str) -> tuple[list[Requirement], list[str]]:
    """The lock's requirements, and its lines that do not pin one exact version."""
    out, problems = [], []
    for line in lock_text.splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        specifiers = list(requirement.specifier)
        if (len(specifiers) != 1 or specifiers[0].operator not in ("==", "===")
                or "*" in specifiers[0].version or requirement.url or requirement.extras):
            problems.append(f"not one exact pin: {text}")
        out.append(requirement)
    return out, problems


def declared(pyproject_text: str) -> list[Requirement]:
    """The library's dependencies and every extra's requirements (its own extras left out:
    they are expanded where they are declared)."""
    project = tomllib.loads(pyproject_text)["project"]
    own = canonicalize_name(project["name"])
    lines: Iterable[str] = [*project.get("dependencies", []),
                            *(r for extra in project.get("optional-dependencies", {}).values()
                              for r in extra)]
    return [r for r in map(Requirement, lines) if canonicalize_name(r.name) != own]


def lock_problems(pyproject_text: str, lock_text: str,
                  extra: Iterable[str] = ()) -> list[str]:
    pins, problems = locked(lock_text)
    for requirement in [*declared(pyproject_text), *map(Requirement, extra)]:
        for environment in ENVIRONMENTS:
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            versions = [next(iter(p.specifier)).version for p in pins
                        if canonicalize_name(p.name) == canonicalize_name(requirement.name)
                        and (p.marker is None or p.marker.evaluate(environment))]
            if len(versions) != 1:
                problems.append(f"{requirement.name}: {len(versions)} locked versions for "
                                f"Python {environment['python_version']}")
            elif not requirement.specifier.contains(versions[0], prereleases=True):
                problems.append(f"{requirement}: locked {versions[0]}")
    return sorted(set(problems))


def test_the_lock_fits_pyproject() -> None:
    # the inference service's own requirements are pinned in the image from the lock;
    # the Lambda bundle takes MLflow's client-only distribution at the library's version
    mlflow = next(r for r in declared(PYPROJECT.read_text()) if r.name == "mlflow")
    assert lock_problems(PYPROJECT.read_text(), LOCK.read_text(),
                         extra=[*SERVICE_REQUIREMENTS, f"mlflow-skinny{mlflow.specifier}"]) == []


def test_the_lock_says_how_it_is_made() -> None:
    assert "make lock" in LOCK.read_text().split("\n\n", 1)[0]


PYPROJECT_SAMPLE = """
[project]
name = "trainship"
dependencies = ["pydantic>=2.7,<3", "packaging>=23", "tomli>=2; python_version < '3.11'"]
[project.optional-dependencies]
aws = ["boto3>=1.34"]
lambda = ["trainship[aws]", "kubernetes==36.0.3"]
"""


@pytest.mark.parametrize(("lock", "problem"), [
    ("pydantic==2.8.0\npackaging==24.1\nboto3==1.35.0\nkubernetes==36.0.3\n", None),
    ("pydantic==2.8.0\npackaging==24.1\nboto3==1.35.0\nkubernetes==37.0.0\n",
     "kubernetes==36.0.3: locked 37.0.0"),
    ("pydantic==2.8.0\npackaging==24.1\nboto3==1.35.0\n", "kubernetes: 0 locked versions"),
    ("pydantic>=2.8.0\npackaging==24.1\nboto3==1.35.0\nkubernetes==36.0.3\n",
     "not one exact pin: pydantic>=2.8.0"),
    ("pydantic==3.0.0\npackaging==24.1\nboto3==1.35.0\nkubernetes==36.0.3\n",
     "pydantic<3,>=2.7: locked 3.0.0"),
    ("pydantic==2.8.0\npackaging==24.1\nboto3==1.35.0 ; sys_platform == 'win32'\n"
     "kubernetes==36.0.3\n", "boto3: 0 locked versions"),
])
def test_drift_is_found(lock: str, problem: str | None) -> None:
    problems = lock_problems(PYPROJECT_SAMPLE, lock)
    if problem is None:
        assert problems == []
    else:
        assert any(p.startswith(problem) for p in problems), problems
