"""A model's front on the local stack (process and podman modes): the driver's side of
trainship.cluster.proxy, one proxy process per model.

Its files live in the model's record directory: ``service.json`` (the proxy's port, pid and
URL: the port is chosen once and kept for the model, across versions and restarts),
``target`` (the live version's port, or the ports and weights of a split: trainship.cluster.
weighted), ``control`` (the proxy's control port) and
``service.log``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from trainship.cluster import R, traffic_by_records, weighted
from trainship.cluster.handles import FrontRecord, read_json
from trainship.procs import free_port, library_path, pid_alive, stop_pid

# How long a retired version may keep answering the connections it has: Kubernetes' default
# terminationGracePeriodSeconds. As a terminating pod is removed from its Service's endpoints
# (no new connections) while it finishes what it serves, then stopped
# (https://kubernetes.io/docs/concepts/workloads/pods/pod-termination/).
DRAIN_SECONDS = 30.0


def record(directory: Path) -> FrontRecord | None:
    path = directory / "service.json"
    return read_json(FrontRecord, path.read_text()) if path.exists() else None


def ensure(directory: Path, what: str) -> FrontRecord:
    """The model's front: started unless it runs, on the port it always had."""
    known = record(directory)
    if known and pid_alive(known["pid"]):
        return known
    port = known["port"] if known else free_port()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "target"
    target.touch()
    (directory / "control").unlink(missing_ok=True)
    with open(directory / "service.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainship.cluster.proxy", "--port", str(port),
             "--target-file", str(target), "--control-file", str(directory / "control")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": library_path()})
    front: FrontRecord = {"port": port, "pid": proc.pid, "url": f"http://127.0.0.1:{port}"}
    (directory / "service.json").write_text(json.dumps(front))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (
            listening(port) and (directory / "control").exists()):
        if proc.poll() is not None:
            raise RuntimeError(f"the service proxy for {what} exited; see "
                               f"{directory / 'service.log'}")
        time.sleep(0.1)
    return front


def point(directory: Path, port: int) -> None:
    """New connections to the model's URL go to ``port`` from now on (an atomic replace)."""
    _write(directory, str(port))


def share(directory: Path, targets: list[tuple[int, int]]) -> None:
    """Requests to the model's URL are shared among ``targets`` (port, weight) from now on,
    in proportion to the weights (trainship.cluster.weighted); one target of weight > 0
    alone is written as ``point`` writes it."""
    _write(directory, weighted.render(targets))


def targets(directory: Path) -> weighted.Targets:
    """What the target file holds now (nothing when there is none, or it does not read)."""
    try:
        return weighted.parse((directory / "target").read_text())
    except (OSError, ValueError):
        return ()


def _write(directory: Path, text: str) -> None:
    target = directory / "target"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(target)


def drain(directory: Path, port: int, seconds: float = DRAIN_SECONDS) -> int:
    """Wait until the front relays no connection to ``port`` (a retired version; the target
    points elsewhere already), at most ``seconds``: the connections left (0: drained). A
    front that does not run, or one without a control port, relays nothing: 0."""
    front = record(directory)
    control = directory / "control"
    if front is None or not pid_alive(front["pid"]) or not control.exists():
        return 0
    try:
        with socket.create_connection(("127.0.0.1", int(control.read_text())),
                                      timeout=seconds + 5) as sock:
            sock.sendall(f"drain {port} {seconds}\n".encode())
            answer = sock.makefile().readline().split()
    except (OSError, ValueError):
        return 0
    return int(answer[1]) if len(answer) == 2 and answer[0] == "drained" else 0


def stop(directory: Path) -> None:
    front = record(directory)
    if front and pid_alive(front["pid"]):
        stop_pid(front["pid"])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def split(directory: Path, handle: R, records: list[R], percent: int) -> int:
    """A local driver's ``set_traffic``: ``handle``'s version gets ``percent`` of the
    model's requests through its front, the live one among ``records`` the rest (the share
    set: ``percent``)."""
    return traffic_by_records(handle, records, percent,
                       share=lambda found: share(directory, found),
                       current=lambda: targets(directory))


def withdraw(directory: Path, port: int) -> None:
    """A version the front shares requests with (a canary) leaves the share and is
    drained; one the front never sent requests to is left alone."""
    found = targets(directory)
    if any(target == port for target, _ in found):
        share(directory, [t for t in found if t[0] != port])
        drain(directory, port)
