from __future__ import annotations

from pathlib import Path

import pytest

from trainship.local.codebuild import BuildFailed, LocalCodeBuild, Project


def make(tmp_path: Path, spec: str) -> LocalCodeBuild:
    buildspec = tmp_path / "spec.yml"
    buildspec.write_text(spec)
    return LocalCodeBuild(projects={"p": Project("p", buildspec, tmp_path, {"FROM_PROJECT": "1"})},
                          logs_dir=tmp_path / "logs", work_root=tmp_path / "work",
                          base_env={"PATH": "/usr/bin:/bin"})


SPEC = """
version: 0.2
env:
  variables: {GREETING: hello}
  exported-variables: [RESULT, GREETING]
phases:
  install:
    commands:
      - export STEP1=one
  build:
    commands:
      - export RESULT="$STEP1-$FROM_PROJECT-$OVERRIDE"
      - echo "built $RESULT"
"""


def test_phases_share_variables_and_export(tmp_path: Path) -> None:
    cb = make(tmp_path, SPEC)
    build = cb.start_build("p", [{"Name": "OVERRIDE", "Value": "x", "Type": "PLAINTEXT"}])
    assert build["BuildStatus"] == "SUCCEEDED"
    exported = {v["Name"]: v["Value"] for v in build["ExportedEnvironmentVariables"]}
    assert exported == {"RESULT": "one-1-x", "GREETING": "hello"}
    assert [p["PhaseType"] for p in build["Phases"]] == ["INSTALL", "BUILD"]
    log = cb.log_path(build["Id"]).read_text()
    assert "built one-1-x" in log and "Build SUCCEEDED" in log


def test_failed_build_runs_post_build_and_raises(tmp_path: Path) -> None:
    cb = make(tmp_path, """
version: 0.2
phases:
  build:
    commands:
      - echo before
      - exit 3
      - echo never
  post_build:
    commands:
      - echo "post $CODEBUILD_BUILD_SUCCEEDING"
""")
    with pytest.raises(BuildFailed) as caught:
        cb.start_build("p")
    build = caught.value.build
    assert build["BuildStatus"] == "FAILED"
    log = cb.log_path(build["Id"]).read_text()
    assert "before" in log and "never" not in log and "post 0" in log


def test_failed_install_skips_build(tmp_path: Path) -> None:
    cb = make(tmp_path, """
version: 0.2
phases:
  install:
    commands: [false]
  build:
    commands: [echo building]
""")
    with pytest.raises(BuildFailed) as caught:
        cb.start_build("p")
    log = cb.log_path(caught.value.build["Id"]).read_text()
    assert "Entering phase INSTALL" in log and "Entering phase BUILD" not in log
    assert [p["PhaseType"] for p in caught.value.build["Phases"]] == ["INSTALL"]


def test_unknown_project(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        make(tmp_path, SPEC).start_build("nope")


def test_start_build_refuses_an_override_over_4096_characters(tmp_path: Path) -> None:
    """CodeBuild's StartBuild answers 400 InvalidInputException "EnvironmentVariable should
    be at most 4096 characters"; Step Functions fails the Task with
    CodeBuild.InvalidInputException. No build starts."""
    from trainship.local.codebuild import InvalidInputException
    from trainship.local.sfn import TaskFailure

    cb = make(tmp_path, SPEC)
    at_limit = cb.start_build("p", [{"Name": "OVERRIDE", "Value": "x" * 4096,
                                     "Type": "PLAINTEXT"}])
    assert at_limit["BuildStatus"] == "SUCCEEDED"
    with pytest.raises(InvalidInputException) as caught:
        cb.start_build("p", [{"Name": "OVERRIDE", "Value": "x" * 4097, "Type": "PLAINTEXT"}])
    assert isinstance(caught.value, TaskFailure)
    assert caught.value.error == "CodeBuild.InvalidInputException"
    assert "should be at most 4096 characters" in caught.value.cause
    assert len(list((tmp_path / "logs" / "p").iterdir())) == 1  # only the first build ran


def test_the_build_log_is_capped_and_the_build_still_succeeds(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """A command printing far more than the cap (one long line, then lines) neither blocks
    on its pipe nor grows the log past the cap; later commands and phases still log."""
    from trainship.local import codebuild

    monkeypatch.setattr(codebuild, "MAX_BUILD_LOG_CHARS", 100_000)
    cb = make(tmp_path, """
version: 0.2
phases:
  build:
    commands:
      - head -c 3000000 /dev/zero | tr '\\0' x
      - yes "a line of output" | head -n 200000
      - echo "after the flood"
""")
    build = cb.start_build("p")
    assert build["BuildStatus"] == "SUCCEEDED"
    log = cb.log_path(build["Id"]).read_text()
    assert len(log) < 100_000 + 5_000
    assert "keeps at most 100000 characters of command output" in log
    assert "characters of command output were dropped" in log
    assert "Running command echo \"after the flood\"" in log
    assert "Phase complete: BUILD State: SUCCEEDED" in log
