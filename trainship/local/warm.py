"""A warm interpreter for the local stack's ``python3 -m trainship...`` processes.

The buildspecs start ``python3`` several times per deployment (``trainship.training
create-run``, ``trainship.training run``, ``trainship.image build``), and the process
driver starts the model's server (``trainship.serving``); each of those imports MLflow,
about 2-4 s on two cores: most of what a local deployment costs on top of its script. On
AWS every command runs in CodeBuild's container as written (and the server in its pod).
Locally the builds' ``PATH`` starts with a ``python3`` shim (``<home>/warm/bin/python3``;
the process driver runs it instead of its interpreter when they are the same): for ``-m``
with one of ``MODULES`` it hands its argv, environment, working directory and standard
streams (their file descriptors, over a Unix socket) to this server, which has imported
MLflow, boto3 and those modules once and forks a child per command; the child takes the
command's environment, directory and streams and runs the module as ``__main__``, and the
shim exits with its status. Anything else (another module, ``-c``, a script, another
``PYTHONPATH``, no server) the shim runs with the real interpreter (``execv``), as before.
The user's script never goes through it: the runner starts it with the environment's own
interpreter, a fresh process whose run time is the script's.

What a child shares with the others is what importing those modules left in memory: the
server starts with the builds' base environment only (no credentials, no stack secret),
imports and starts no thread (the server refuses to fork when a thread runs), and each
child replaces the whole of ``os.environ`` with the command's. A shim that dies (the
build's timeout kills the command's process tree) closes its connection: the server then
kills the child's whole tree, as the timeout would have. The shim passes SIGTERM, SIGINT
and SIGHUP on to the child's process group and exits with its status, so that stopping
the shim (``stop_pid``, as the drivers stop a model server) stops the child gracefully.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from trainship.procs import kill_tree, stop_pid

# the modules the buildspecs run, and the inference service the process driver starts
# (trainship.cluster.process), with what they import on the way (scikit-learn's common
# estimators: the flavor most models use; a module that is not installed is skipped)
MODULES = ("trainship.training", "trainship.image", "trainship.serving")
PRELOAD = ("mlflow", "mlflow.artifacts", "mlflow.tracking", "mlflow.pyfunc",
           "mlflow.pyfunc.scoring_server", "boto3", "botocore.session",
           "requests_auth_aws_sigv4", "trainship.training", "trainship.image",
           "trainship.image.context", "trainship.serving.cli", "trainship.serving.workers",
           "sklearn.pipeline", "sklearn.linear_model", "sklearn.ensemble", "sklearn.tree",
           "skops.io")
SOCKET_NAME = "python.sock"
_HEADER = struct.Struct("!I")

SHIM = '''\
#!{python} -S
# trainship's local stack: python3 for its builds and model servers (trainship/local/warm.py)
import json, os, signal, socket, struct, sys, time
REAL = {python!r}
SOCK = {socket!r}
MODULES = {modules!r}
args = sys.argv[1:]
if len(args) >= 2 and args[0] == "-m" and args[1] in MODULES:
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(SOCK)
        body = json.dumps({{"module": args[1], "args": args[2:], "cwd": os.getcwd(),
                           "env": dict(os.environ)}}).encode()
        socket.send_fds(conn, [struct.pack("!I", len(body))], [0, 1, 2])
        conn.sendall(body)
        reply = conn.makefile("rb")
        answer = reply.readline().split()
    except OSError:
        answer = []
    if len(answer) == 2 and answer[0] == b"ok":
        child = int(answer[1])  # leads its own process group: signals go on to it

        def forward(signum, frame):
            try:
                os.killpg(child, signum)
            except OSError:
                pass

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, forward)
        line = reply.readline().strip()
        if line.lstrip(b"-").isdigit():
            sys.exit(int(line))
        while True:  # the server went away first: stay while the command runs
            try:
                os.kill(child, 0)
            except OSError:
                sys.exit(1)
            time.sleep(0.5)
os.execv(REAL, [REAL, *args])
'''


def socket_path(home: Path) -> Path:
    return home / "warm" / SOCKET_NAME


def write_shim(home: Path, python: str = sys.executable,
               modules: tuple[str, ...] = MODULES) -> Path:
    """``<home>/warm/bin/python3``: the shim; its directory goes first on the builds' PATH."""
    directory = home / "warm" / "bin"
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "python3"
    shim.write_text(SHIM.format(python=python, socket=str(socket_path(home)),
                                modules=modules))
    shim.chmod(0o755)
    return directory


class WarmPython:
    """The server process, started by the local stack's daemon for its builds."""

    def __init__(self, home: Path, env: dict[str, str], log: Path,
                 modules: tuple[str, ...] = MODULES,
                 preload: tuple[str, ...] = PRELOAD) -> None:
        self.home = home
        self.env = env
        self.log = log
        self.modules = modules
        self.preload = preload
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Path:
        """Start the server (it listens once its imports are done: until then the shim
        runs the real interpreter); return the shim's directory."""
        path = socket_path(self.home)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "trainship.local.warm", str(path),
                 ",".join(self.modules), ",".join(self.preload)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=self.env)
        return write_shim(self.home, modules=self.modules)

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid, grace=5)
            self.proc = None
        socket_path(self.home).unlink(missing_ok=True)


# --- the server ------------------------------------------------------------------------

def _read_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    header, fds, _flags, _addr = socket.recv_fds(conn, _HEADER.size, 3)
    if len(header) != _HEADER.size or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("no request")
    (size,) = _HEADER.unpack(header)
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            break
        body += chunk
    return json.loads(body), fds


def _child(request: dict[str, Any], fds: list[int]) -> int:
    """In the forked child: become the command, run its module as __main__."""
    os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), errors="replace")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), errors="backslashreplace",
                                  line_buffering=True, write_through=unbuffered)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), errors="backslashreplace",
                                  line_buffering=True, write_through=True)
    sys.argv = [request["module"], *request["args"]]
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported as the interpreter would
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    return code


def prime_mlflow() -> None:
    """Work MLflow does once per process when it loads a model, done here once for every
    child: ``mlflow.pyfunc.load_model`` checks the model's requirements against what is
    installed, with a map of every installed distribution's top-level modules
    (importlib.metadata's ``packages_distributions``, about 1 s on two cores: most of a
    process-mode model server's start) that MLflow keeps in a module global
    (``mlflow.utils.requirements_utils``). A child inherits it built. Distributions
    installed into the stack's environment while it runs are not in it: the check's
    warnings would miss them, nothing else reads it in a model server."""
    try:
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()  # type: ignore[no-untyped-call]
    except Exception as exc:  # noqa: BLE001 - a private API: without it, each child builds it
        print(f"warm python: MLflow's distribution map not built ({exc!r})", flush=True)


def serve(path: Path, modules: tuple[str, ...] = MODULES,
          preload: tuple[str, ...] = PRELOAD) -> None:
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module not installed is imported by the command
            print(f"warm python: {name} not preloaded", flush=True)
    if "mlflow.pyfunc" in preload:
        prime_mlflow()
    if threading.active_count() > 1:  # forking a process with threads is not safe
        print("warm python: a preloaded module started a thread; not serving", flush=True)
        return
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path) + ".new")
    os.chmod(str(path) + ".new", 0o600)
    os.replace(str(path) + ".new", path)  # the shim connects only once all is imported
    listener.listen(16)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    print(f"warm python: serving {', '.join(modules)} on {path}", flush=True)
    try:
        _loop(listener, selector, wake_r, wake_w, modules)
    finally:  # stopped (SIGTERM): the commands still running stop too
        for pid in list(_RUNNING):
            kill_tree(pid)
        path.unlink(missing_ok=True)


_RUNNING: dict[int, socket.socket] = {}  # child pid -> its shim's connection


def _loop(listener: socket.socket, selector: selectors.BaseSelector, wake_r: int,
          wake_w: int, modules: tuple[str, ...]) -> None:
    running = _RUNNING
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                conn, _addr = listener.accept()
                try:
                    request, fds = _read_request(conn)
                except (OSError, ValueError):
                    conn.close()
                    continue
                if (request.get("module") not in modules
                        or _path_entries(request.get("env", {}).get("PYTHONPATH"))
                        != _path_entries(os.environ.get("PYTHONPATH"))):
                    conn.sendall(b"no\n")  # the shim runs the real interpreter
                    conn.close()
                    for fd in fds:
                        os.close(fd)
                    continue
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        signal.set_wakeup_fd(-1)
                        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                        signal.signal(signal.SIGTERM, signal.SIG_DFL)
                        selector.close()
                        listener.close()
                        os.close(wake_r)
                        os.close(wake_w)
                        for other in running.values():
                            other.close()
                        conn.close()
                        code = _child(request, fds)
                    finally:
                        os._exit(code)
                for fd in fds:
                    os.close(fd)
                conn.sendall(f"ok {pid}\n".encode())
                running[pid] = conn
                selector.register(conn, selectors.EVENT_READ, pid)
            elif key.fileobj == wake_r:
                os.read(wake_r, 512)
                _reap(running, selector)
            else:  # the shim went away (killed): so does its command
                pid = key.data
                selector.unregister(key.fileobj)
                kill_tree(pid)
        _reap(running, selector)


def _path_entries(value: str | None) -> list[str]:
    """A PYTHONPATH as the directories it puts on sys.path, in order, each once."""
    return list(dict.fromkeys(entry for entry in (value or "").split(os.pathsep) if entry))


def _reap(running: dict[int, socket.socket], selector: selectors.BaseSelector) -> None:
    while running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = running.pop(pid, None)
        if conn is None:
            continue
        try:
            selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        code = os.waitstatus_to_exitcode(status)
        try:  # killed by a signal: the status a shell reports for it
            conn.sendall(f"{code if code >= 0 else 128 - code}\n".encode())
        except OSError:
            pass
        conn.close()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), *(tuple(filter(None, arg.split(","))) for arg in sys.argv[2:4]))
