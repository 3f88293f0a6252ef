"""One local stack per home: `trainship local up` twice at once (as `local up &` then
`deploy` does) starts one daemon; status and down agree with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainship.procs import pid_alive

pytestmark = pytest.mark.e2e


def daemons(home: Path) -> list[int]:
    """The live local stack daemons of a home, from every process's command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"trainship.local.daemon" in argv and str(home).encode() in argv \
                and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def local(home: Path, action: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "trainship.cli", "local", action, "--home", str(home)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TRAINSHIP_TARGETS": "process"})


def test_two_ups_at_once_start_one_daemon_that_status_and_down_agree_on(
        tmp_path: Path) -> None:
    home = (tmp_path / "home").resolve()
    ups = [local(home, "up"), local(home, "up")]
    try:
        outputs = [proc.communicate(timeout=300) for proc in ups]
        assert [proc.returncode for proc in ups] == [0, 0], outputs
        apis = {line for out, _ in outputs for line in out.splitlines()
                if line.startswith("API: ")}
        assert len(apis) == 1, outputs  # both answered with the one stack
        assert len(daemons(home)) == 1
        status = local(home, "status")
        out, err = status.communicate(timeout=60)
        assert status.returncode == 0 and apis <= set(out.splitlines()), (out, err)
    finally:
        for proc in ups:
            if proc.poll() is None:
                proc.kill()
        down = local(home, "down")
        out, err = down.communicate(timeout=120)
    assert down.returncode == 0 and "local stack stopped" in out, (out, err)
    assert daemons(home) == []
    status = local(home, "status")
    out, _ = status.communicate(timeout=60)
    assert status.returncode != 0 and "not running" in out
