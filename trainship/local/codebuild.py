"""A local CodeBuild: runs a buildspec (version 0.2) phase by phase.

What it keeps of CodeBuild's behaviour: phases install, pre_build, build, post_build in
order, each command in a shell that sees the variables exported by earlier commands;
a failing install/pre_build ends the build, a failing build still runs post_build;
``env.variables`` then the project's variables then the StartBuild overrides; the
``env.exported-variables`` read at the end of the build and returned the way CodeBuild's
build result does (``Build.ExportedEnvironmentVariables``); one log per build; and
StartBuild's refusal of an environment variable override longer than 4096 characters.

What it adds: a build's log keeps at most MAX_BUILD_LOG_CHARS of its commands' output
(CloudWatch Logs keeps everything; a local disk should not). Output past that is read and
dropped, so a command never blocks on a full pipe, and one line in the log says so. The
training runner caps the script's own output far below this, on AWS too.
"""

from __future__ import annotations

import codecs
import os
import shlex
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import yaml

from trainship.local.sfn import TaskFailure
from trainship.procs import kill_tree

PHASES = ("install", "pre_build", "build", "post_build")
# StartBuild refuses an environment variable longer than this with a 400
# InvalidInputException "EnvironmentVariable should be at most 4096 characters". Neither
# the CodeBuild API reference (EnvironmentVariable: no length constraint on value) nor
# "Quotas for AWS CodeBuild" states it; it is the service's answer as reported by users
# who passed large values through the override (e.g. GitHub issue
# wolfeidau/buildkite-serverless-agent#35, a squashed commit message as a variable).
MAX_ENVIRONMENT_VARIABLE_LENGTH = 4096
MAX_BUILD_LOG_CHARS = 64 << 20


def container_stamp(now: datetime | None = None) -> str:
    """The time CodeBuild puts after ``[Container]`` on its own log lines
    (``2026/12/07 14:08:58.123456``), in UTC."""
    return (now or datetime.now(UTC)).strftime("%Y/%m/%d %H:%M:%S.%f")


class CappedLog:
    """A build's log file; commands' output is kept up to ``limit`` characters."""

    def __init__(self, out: IO[str], limit: int | None = None) -> None:
        self.out = out
        self.limit = MAX_BUILD_LOG_CHARS if limit is None else limit
        self.kept = 0
        self.dropped = 0

    def write(self, text: str) -> None:
        """The runner's own lines ([Container] ...), always kept, stamped with the time as
        CodeBuild stamps them."""
        if text.startswith("[Container] "):
            text = f"[Container] {container_stamp()} {text[len('[Container] '):]}"
        self.out.write(text)
        self.out.flush()

    def copy(self, stream: IO[bytes]) -> None:
        """Copy a command's output until it closes, keeping what fits under the cap."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            chunk = stream.read1(64 << 10)  # type: ignore[attr-defined]
            text = decoder.decode(chunk, final=not chunk)
            part = text[:max(self.limit - self.kept, 0)]
            if part:
                self.out.write(part)
                self.kept += len(part)
            if len(text) > len(part):
                if not self.dropped:
                    self.out.write(f"\n[Container] The build log keeps at most {self.limit} "
                                   "characters of command output: the rest is dropped\n")
                self.dropped += len(text) - len(part)
            self.out.flush()
            if not chunk:
                return


class InvalidInputException(TaskFailure):
    """StartBuild refused the request; Step Functions names the error after the service's
    exception (``CodeBuild.InvalidInputException``), with no build and no build logs."""

    def __init__(self, message: str) -> None:
        super().__init__("CodeBuild.InvalidInputException",
                         f"{message} (Service: AWSCodeBuild; Status Code: 400; "
                         "Error Code: InvalidInputException)")


def check_overrides(overrides: list[dict[str, str]]) -> None:
    """Refuse the StartBuild overrides CodeBuild would refuse."""
    for item in overrides:
        # CodeBuild counts the variable's value (the error names the variable).
        if len(str(item.get("Value", ""))) > MAX_ENVIRONMENT_VARIABLE_LENGTH:
            raise InvalidInputException(
                f"EnvironmentVariable should be at most {MAX_ENVIRONMENT_VARIABLE_LENGTH} "
                f"characters")


class BuildFailed(Exception):
    def __init__(self, build: dict[str, Any]) -> None:
        super().__init__(f"build {build['Id']} {build['BuildStatus']}")
        self.build = build


@dataclass
class Project:
    name: str
    buildspec: Path
    source_dir: Path
    environment: dict[str, str] = field(default_factory=dict)
    timeout_seconds: int = 3600


@dataclass
class LocalCodeBuild:
    projects: dict[str, Project]
    logs_dir: Path
    work_root: Path
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _active: set[int] = field(default_factory=set)

    def kill_all(self) -> None:
        """Stop every running build (the local stack is stopping)."""
        for pid in list(self._active):
            kill_tree(pid)

    def log_path(self, build_id: str) -> Path:
        project, _, run = build_id.partition(":")
        return self.logs_dir / project / f"{run}.log"

    def start_build(self, project_name: str,
                    overrides: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """Run a build to completion; return CodeBuild's build result or raise BuildFailed."""
        project = self.projects.get(project_name)
        if project is None:
            raise KeyError(f"no CodeBuild project {project_name!r}")
        check_overrides(overrides or [])
        with self._lock:
            self._counter += 1
            number = self._counter
        run = str(uuid.uuid4())
        build_id = f"{project_name}:{run}"
        log = self.log_path(build_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        workdir = self.work_root / run
        workdir.mkdir(parents=True, exist_ok=True)
        spec = yaml.safe_load(project.buildspec.read_text())
        env_spec = spec.get("env", {}) or {}
        env = dict(self.base_env)
        env.update({str(k): str(v) for k, v in (env_spec.get("variables") or {}).items()})
        env.update(project.environment)
        for item in overrides or []:
            env[item["Name"]] = str(item.get("Value", ""))
        env.update({
            "CODEBUILD_BUILD_ID": build_id,
            "CODEBUILD_BUILD_NUMBER": str(number),
            "CODEBUILD_SRC_DIR": str(project.source_dir),
            "CODEBUILD_BUILD_SUCCEEDING": "1",
            "CODEBUILD_INITIATOR": "states/local",
        })
        started = datetime.now(UTC)
        deadline = time.monotonic() + project.timeout_seconds
        state_file = workdir / ".codebuild-env"
        state_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
        phases: list[dict[str, Any]] = []
        status = "SUCCEEDED"
        with open(log, "w") as handle:
            out = CappedLog(handle)
            out.write(f"[Container] Running build {build_id}\n")
            for phase in PHASES:
                if status != "SUCCEEDED" and phase != "post_build":
                    continue
                commands = ((spec.get("phases") or {}).get(phase) or {}).get("commands") or []
                if not commands:
                    continue
                t0 = time.monotonic()
                phase_status = "SUCCEEDED"
                out.write(f"[Container] Entering phase {phase.upper()}\n")
                for command in commands:
                    out.write(f"[Container] Running command {command}\n")
                    rc = self._run_command(str(command), state_file, workdir, out, deadline,
                                           self._active)
                    if rc != 0:
                        out.write(f"[Container] Command did not exit successfully {command} "
                                  f"exit status {rc}\n")
                        phase_status = "TIMED_OUT" if rc == 124 else "FAILED"
                        break
                out.write(f"[Container] Phase complete: {phase.upper()} State: {phase_status}\n")
                phases.append({"PhaseType": phase.upper(), "PhaseStatus": phase_status,
                               "DurationInSeconds": round(time.monotonic() - t0)})
                if phase_status != "SUCCEEDED" and status == "SUCCEEDED":
                    status = "FAILED" if phase_status == "FAILED" else "TIMED_OUT"
                    self._set(state_file, "CODEBUILD_BUILD_SUCCEEDING", "0")
            exported = self._exported(state_file, env_spec.get("exported-variables") or [])
            if out.dropped:
                out.write(f"[Container] {out.dropped} characters of command output were "
                          f"dropped (log cap {out.limit})\n")
            out.write(f"[Container] Build {status}\n")
        build = {
            "Id": build_id,
            "Arn": f"arn:aws:codebuild:us-east-1:000000000000:build/{build_id}",
            "BuildNumber": number,
            "ProjectName": project_name,
            "BuildStatus": status,
            "BuildComplete": True,
            "CurrentPhase": "COMPLETED",
            "StartTime": started.isoformat(),
            "EndTime": datetime.now(UTC).isoformat(),
            "Phases": phases,
            "Logs": {"GroupName": f"/aws/codebuild/{project_name}", "StreamName": run,
                     "DeepLink": log.resolve().as_uri()},
            "Environment": {"EnvironmentVariables": [
                {"Name": o["Name"], "Value": str(o.get("Value", "")),
                 "Type": o.get("Type", "PLAINTEXT")} for o in overrides or []]},
            "ExportedEnvironmentVariables": exported,
        }
        if status != "SUCCEEDED":
            raise BuildFailed(build)
        return build

    @staticmethod
    def _set(state_file: Path, name: str, value: str) -> None:
        with open(state_file, "a") as handle:
            handle.write(f"export {name}={shlex.quote(value)}\n")

    @staticmethod
    def _run_command(command: str, state_file: Path, workdir: Path, out: CappedLog,
                     deadline: float, active: set[int]) -> int:
        script = (f". {shlex.quote(str(state_file))}\n{command}\n__rc=$?\n"
                  f"export -p > {shlex.quote(str(state_file))}\nexit $__rc\n")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return 124
        proc = subprocess.Popen(["bash", "-c", script], cwd=workdir, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env={"PATH": os.environ["PATH"]},
                                start_new_session=True)
        active.add(proc.pid)
        assert proc.stdout is not None
        copier = threading.Thread(target=out.copy, args=(proc.stdout,), daemon=True)
        copier.start()
        try:
            return proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.wait()
            return 124
        finally:
            active.discard(proc.pid)
            # a background process the command left may hold the pipe: stop waiting then
            copier.join(timeout=10)
            if not copier.is_alive():
                proc.stdout.close()

    @staticmethod
    def _exported(state_file: Path, names: list[str]) -> list[dict[str, str]]:
        # the shell's environment as it ends (no interpreter to start for it)
        script = f". {shlex.quote(str(state_file))} >/dev/null 2>&1\nexec env -0\n"
        proc = subprocess.run(["bash", "-c", script], capture_output=True,
                              env={"PATH": os.environ["PATH"]})
        values = dict(item.split("=", 1) for item in
                      proc.stdout.decode(errors="replace").split("\0") if "=" in item)
        return [{"Name": n, "Value": values.get(n, "")} for n in names]
