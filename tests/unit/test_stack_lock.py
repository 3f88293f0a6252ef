"""One local stack per home: the daemon's lock, as up/status/down read it (no stack
started: a process that only holds the lock stands for the daemon)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainship.local import stack

REPO = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time; from pathlib import Path; from trainship.local import stack\n"
        "lock = stack.hold_lock(Path(sys.argv[1]))\n"
        "print('held' if lock else 'refused', flush=True)\n"
        "time.sleep(60 if lock else 0)\n")


def hold(home: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(home)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO, env={"PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_no_lock_no_stack(tmp_path: Path) -> None:
    assert stack.holder(tmp_path) is None
    assert stack.read_info(tmp_path) is None
    assert stack.down(tmp_path) is False


def test_the_holder_is_the_stack_and_a_second_one_is_refused(tmp_path: Path) -> None:
    first = hold(tmp_path)
    try:
        assert stack.holder(tmp_path) == first.pid
        second = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path)],
                                capture_output=True, text=True, cwd=REPO,
                                env={"PYTHONPATH": str(REPO)}, timeout=60)
        assert second.stdout.strip() == "refused"
        assert stack.holder(tmp_path) == first.pid  # the refused one took nothing away
    finally:
        first.kill()
        first.wait()
    assert stack.holder(tmp_path) is None  # the lock goes with its process


def test_info_counts_only_when_its_daemon_holds_the_lock(tmp_path: Path) -> None:
    info = {"ready": True, "api": "http://127.0.0.1:1"}
    proc = hold(tmp_path)
    try:
        (tmp_path / "stack.json").write_text(json.dumps({**info, "pid": proc.pid + 1}))
        assert stack.read_info(tmp_path) is None  # left by an earlier daemon
        (tmp_path / "stack.json").write_text(json.dumps({**info, "pid": proc.pid}))
        assert stack.read_info(tmp_path) == {**info, "pid": proc.pid}
    finally:
        proc.kill()
        proc.wait()
    assert stack.read_info(tmp_path) is None


def test_down_stops_the_holder(tmp_path: Path) -> None:
    proc = hold(tmp_path)
    started = time.monotonic()
    try:
        assert stack.down(tmp_path, timeout=30) is True
        assert proc.wait(timeout=10) is not None
    finally:
        proc.kill()
    assert stack.holder(tmp_path) is None
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("pid_text", ["", "garbage"])
def test_a_holder_that_has_not_written_its_pid_yet_still_runs(tmp_path: Path,
                                                              pid_text: str) -> None:
    import fcntl

    with open(tmp_path / "stack.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(pid_text)
        handle.flush()
        assert stack.holder(tmp_path) == 0
