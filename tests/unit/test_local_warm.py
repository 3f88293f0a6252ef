"""trainship.local.warm: the local builds' python3 shim and the warm interpreter behind it
run a module as a fresh interpreter would (argv, environment, directory, streams, exit
status), fall back to the real interpreter for anything else, and a killed shim takes its
command down with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trainship.local.warm import WarmPython, socket_path
from trainship.procs import pid_alive

PROBE = """\
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (print("graceful", flush=True), sys.exit(7)))
print("argv", sys.argv[1:], "cwd", os.getcwd(), "probe", os.environ.get("PROBE"), flush=True)
print("stdin", sys.stdin.read().strip(), flush=True)
print("on stderr", file=sys.stderr, flush=True)
if os.environ.get("PROBE_PIDFILE"):
    open(os.environ["PROBE_PIDFILE"], "w").write(str(os.getpid()))
    time.sleep(60)
sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
"""


@pytest.fixture
def warm(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    code = tmp_path / "code"
    code.mkdir()
    (code / "probe_mod.py").write_text(PROBE)
    env = {"PATH": os.environ["PATH"],
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                          str(code)])}
    server = WarmPython(tmp_path / "home", env, tmp_path / "warm.log",
                        modules=("probe_mod",), preload=())
    shim_dir = server.start()
    deadline = time.monotonic() + 60
    while not socket_path(tmp_path / "home").exists():
        assert time.monotonic() < deadline, (tmp_path / "warm.log").read_text()
        time.sleep(0.05)
    try:
        yield shim_dir / "python3", env
    finally:
        server.stop()


def test_runs_the_module_as_a_fresh_interpreter(warm: tuple[Path, dict[str, str]],
                                                tmp_path: Path) -> None:
    shim, env = warm
    done = subprocess.run([str(shim), "-m", "probe_mod", "a", "b c"], input="hello",
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={**env, "PROBE": "x", "PROBE_EXIT": "3"})
    assert done.returncode == 3
    assert done.stdout.splitlines() == [
        f"argv ['a', 'b c'] cwd {tmp_path} probe x", "stdin hello"]
    assert done.stderr == "on stderr\n"
    assert "serving probe_mod" in (tmp_path / "warm.log").read_text()  # it went through


def test_anything_else_runs_the_real_interpreter(warm: tuple[Path, dict[str, str]]) -> None:
    shim, env = warm
    done = subprocess.run([str(shim), "-c", "import sys; print(sys.flags.no_site)"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert (done.returncode, done.stdout) == (0, "0\n")
    other_path = {**env, "PYTHONPATH": env["PYTHONPATH"] + os.pathsep + "/nonexistent"}
    done = subprocess.run([str(shim), "-m", "probe_mod"], capture_output=True, text=True,
                          env={**other_path, "PROBE_EXIT": "4"}, input="", timeout=60)
    assert done.returncode == 4  # a PYTHONPATH the server was not started with: real python


def test_a_killed_shim_takes_its_command_down(warm: tuple[Path, dict[str, str]],
                                              tmp_path: Path) -> None:
    shim, env = warm
    pidfile = tmp_path / "pid"
    proc = subprocess.Popen([str(shim), "-m", "probe_mod"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, env={**env, "PROBE_PIDFILE": str(pidfile)})
    deadline = time.monotonic() + 60
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert child != proc.pid and pid_alive(child)
    proc.kill()
    proc.wait()
    while pid_alive(child):
        assert time.monotonic() < deadline, "the command outlived its shim"
        time.sleep(0.05)


def test_stopping_the_shim_stops_its_command_gracefully(
        warm: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """How the process driver stops a model server (stop_pid: SIGTERM to its group)."""
    shim, env = warm
    pidfile = tmp_path / "pid"
    # the driver's PYTHONPATH names the library again: the same directories on sys.path
    env = {**env, "PYTHONPATH": env["PYTHONPATH"] + os.pathsep + env["PYTHONPATH"]}
    proc = subprocess.Popen([str(shim), "-m", "probe_mod"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, text=True, start_new_session=True,
                            env={**env, "PROBE_PIDFILE": str(pidfile)})
    deadline = time.monotonic() + 60
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert int(pidfile.read_text()) != proc.pid  # it went through the warm interpreter
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 7
    assert proc.stdout is not None and "graceful" in proc.stdout.read()


def test_no_server_runs_the_real_interpreter(tmp_path: Path) -> None:
    from trainship.local.warm import write_shim

    shim = write_shim(tmp_path, modules=("json.tool",)) / "python3"
    done = subprocess.run([str(shim), "-m", "json.tool"], input='{"a": 1}',
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and '"a": 1' in done.stdout
    assert sys.executable  # the shim's real interpreter is this one


def test_the_warm_interpreter_builds_mlflows_distribution_map_for_its_children() -> None:
    """What mlflow.pyfunc.load_model's requirement check builds once per process (about 1 s)
    is built in the warm interpreter, so a model server forked from it finds it built."""
    code = ("from mlflow.utils import requirements_utils as r\n"
            "from trainship.local.warm import prime_mlflow\n"
            "assert r._MODULES_TO_PACKAGES is None\n"
            "prime_mlflow()\n"
            "assert 'sklearn' in r._MODULES_TO_PACKAGES, 'not built'\n"
            "assert r._PACKAGES_TO_MODULES is not None\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert out.returncode == 0, out.stderr
