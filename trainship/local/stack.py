"""The local stack: the embedded default, one machine, no AWS account.

One daemon process per home directory (trainship.local.daemon) runs MLflow, Step
Functions executing the deployment state machine, the Lambda handlers
(trainship.local.lambda_runtime), the local CodeBuild and the API. This module is its
control, what the CLI uses: ``up``, ``read_info`` / ``holder`` (status) and ``down``.

One stack per home: the daemon holds an exclusive lock on ``<home>/stack.lock``
(``fcntl.flock``) for its whole life and writes its pid into it. A daemon that cannot
take the lock exits at once (status LOCKED_EXIT) without touching anything; ``up``
reuses (or waits for) the daemon that holds it; the stack runs exactly while the lock is
held; ``down`` stops the holder and waits for the lock to be released.

State lives under the home directory (``.trainship/`` by default) and survives restarts:
MLflow's database and artifacts, staged scripts, build logs, finished deployments,
image bundles and what serves.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from trainship import containers
from trainship.cluster.podman import PodmanDriver
from trainship.cluster.process import ProcessDriver
from trainship.procs import file_lock, pid_alive

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
# The stack's own access key id (its secret is chosen per home: trainship.local.daemon).
STACK_ACCESS_KEY = "local"
# A daemon's exit status when another daemon holds the home's lock.
LOCKED_EXIT = 75
# How long a starting daemon retries the lock (a status probe holds it for a moment).
LOCK_RETRY_SECONDS = 2.0


@dataclass
class Paths:
    home: Path

    @property
    def info(self) -> Path:
        return self.home / "stack.json"

    @property
    def log(self) -> Path:
        return self.home / "stack.log"

    @property
    def lock(self) -> Path:
        return self.home / "stack.lock"

    def sub(self, name: str) -> Path:
        path = self.home / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def hold_lock(home: Path) -> IO[str] | None:
    """Take the home's stack lock for as long as the returned file stays open (the
    daemon's life) and write this process's pid into it; None if another process holds
    it."""
    paths = Paths(home.resolve())
    paths.home.mkdir(parents=True, exist_ok=True)
    handle = open(paths.lock, "a+")
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                return None
            time.sleep(0.05)
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def holder(home: Path) -> int | None:
    """The pid of the daemon that holds the home's lock (0 if it has not written it yet);
    None when no daemon holds it, i.e. the stack is not running."""
    path = Paths(home.resolve()).lock
    try:
        handle = open(path)
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else 0
        return None  # closing the file releases the probe's shared lock


def read_info(home: Path) -> dict[str, Any] | None:
    """The URLs of the stack when its daemon holds the lock and has finished starting."""
    pid = holder(home)
    info = Paths(home.resolve()).info
    if pid is None or not info.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(info.read_text())
    except ValueError:
        return None
    if not data.get("ready") or int(data.get("pid", 0)) != pid:
        return None  # a file left by an earlier daemon, or this one is still starting
    return data


def up(home: Path, timeout: float = 180) -> dict[str, Any]:
    """Start the daemon unless one holds the home's lock; wait until it is ready; return
    its URLs. Concurrent calls start one daemon and all return its URLs."""
    paths = Paths(home.resolve())
    paths.home.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    proc: subprocess.Popen[bytes] | None = None
    with file_lock(paths.home / "up.lock"):  # one starter at a time
        if holder(paths.home) is None:
            with open(paths.log, "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "trainship.local.daemon", str(paths.home)],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True, cwd=str(REPO_ROOT),
                    env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
            while holder(paths.home) is None:
                if proc.poll() is not None:
                    if proc.returncode == LOCKED_EXIT:
                        break  # a daemon started another way holds the lock: wait for it
                    raise RuntimeError(f"the local stack exited ({proc.returncode}); "
                                       f"see {paths.log}")
                if time.monotonic() > deadline:
                    proc.terminate()
                    raise TimeoutError(f"the local stack did not start within {timeout:.0f} s;"
                                       f" see {paths.log}")
                time.sleep(0.1)
    while time.monotonic() < deadline:
        info = read_info(paths.home)
        if info is not None:
            return info
        if holder(paths.home) is None:
            code = f" ({proc.poll()})" if proc is not None else ""
            raise RuntimeError(f"the local stack exited while starting{code}; see {paths.log}")
        time.sleep(0.3)
    if proc is not None:
        proc.terminate()
    raise TimeoutError(f"the local stack did not start within {timeout:.0f} s; see {paths.log}")


def down(home: Path, timeout: float = 60) -> bool:
    """Stop the daemon that holds the home's lock (and everything it started); wait until
    it has released the lock and exited. False if none was running (servers left over are
    stopped)."""
    paths = Paths(home.resolve())
    pid = holder(paths.home)
    if pid is None:
        ProcessDriver(paths.home / "serving").stop_all()
        stop_containers(paths.home)
        return False
    deadline = time.monotonic() + timeout
    while pid == 0 and time.monotonic() < deadline:  # it has just taken the lock
        time.sleep(0.05)
        pid = holder(paths.home)
    if pid is None:
        return True
    os.kill(pid, signal.SIGTERM)
    # it releases the lock once everything it started has stopped, then exits
    while time.monotonic() < deadline and (holder(paths.home) is not None or pid_alive(pid)):
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < kill_deadline:
            time.sleep(0.05)
    return True


def stop_containers(home: Path) -> None:
    """Stop container mode's pods, service proxies and registry (kept for the next up)."""
    if (home / "podman").exists() and not containers.missing_tools():
        PodmanDriver(home / "podman").stop_all()
    containers.stop_registry(home)
