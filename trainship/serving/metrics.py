"""The service's Prometheus metrics, with prometheus_client in multiprocess mode.

Every worker process writes its samples to its own memory-mapped file in one directory per
server (``PROMETHEUS_MULTIPROC_DIR``, created at start-up under the temporary directory,
the only writable place in the image), and ``GET /metrics`` on any worker reads them all:
a scrape sees every request whichever worker answered it.

- ``trainship_requests_total{path, status}``: every answer with its real status; ``path``
  is the route (``/invocations``, ``/ping``, ...) or ``other`` for a path that is none,
  so the series stay bounded whatever clients ask for;
- ``trainship_request_seconds``: histogram of ``/invocations`` latency;
- ``trainship_errors_total``: ``/invocations`` answered with a 4xx or 5xx;
- ``trainship_batch_requests``: histogram of requests per predict call;
- ``trainship_batch_rows_total``: rows predicted;
- ``trainship_model_info{model_name, model_version}``: what is served (1), from the
  container's TRAINSHIP_MODEL_NAME and TRAINSHIP_MODEL_VERSION (the Kubernetes and podman
  drivers set them); absent when no model name is set. prometheus_client's Info does not
  work in multiprocess mode, so each worker registers it in its own scrape registry,
  beside the collector of the shared files: every worker has the same values.

prometheus_client picks its multiprocess mode when it is imported, from the environment,
so it is imported here only once :func:`create_directory` has set the variable.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
OTHER = "other"  # the path label of every path that is not a route
INVOCATIONS = "/invocations"
ENV = "PROMETHEUS_MULTIPROC_DIR"
DIR_PREFIX = "trainship-metrics-"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


OWNER_LOCK = ".owner"  # the server holds an flock on it for as long as it runs
# each directory's lock file descriptor (inherited by the forked workers)
_held: dict[Path, int] = {}


def _owner_gone(directory: Path) -> bool:
    """Whether the server that made ``directory`` is gone: nobody holds the flock on its
    ``.owner`` file. A pid cannot tell: servers in two containers that share the temporary
    directory (an emptyDir, a podman volume) both run as pid 1, and a restarted container's
    server has the pid its dead predecessor had. An flock is per open file, released when
    its last holder exits, and seen across PID namespaces on the same kernel."""
    lock_path = directory / OWNER_LOCK
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return _pid_gone(directory)  # made by a server from before the lock (or being made)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its server runs
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _pid_gone(directory: Path) -> bool:
    """No process has the pid in the directory's name (ours, a live one, counts as alive:
    in a shared temporary directory another container's server may have it too)."""
    pid_text = directory.name.removeprefix(DIR_PREFIX).split("-", 1)[0]
    if not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def create_directory(base: Path | None = None) -> Path:
    """A fresh, empty directory for this server's metric files, exported as
    ``PROMETHEUS_MULTIPROC_DIR`` for this process and the workers it forks, with this
    server's flock on its ``.owner`` file. Directories left by servers that are gone
    (killed before they could remove theirs) go first."""
    root = Path(base or tempfile.gettempdir())
    for stale in root.glob(f"{DIR_PREFIX}*"):
        if stale.is_dir() and _owner_gone(stale):
            shutil.rmtree(stale, ignore_errors=True)
    directory = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-", dir=root))
    fd = os.open(directory / OWNER_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held[directory] = fd
    os.environ[ENV] = str(directory)
    return directory


def remove_directory(directory: Path) -> None:
    """At the server's exit: its metric files go with it, and its lock."""
    shutil.rmtree(directory, ignore_errors=True)
    fd = _held.pop(directory, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
    if os.environ.get(ENV) == str(directory):
        del os.environ[ENV]


def worker_exited(pid: int, directory: Path) -> None:
    """Bookkeeping for a worker that is gone (prometheus_client drops its live gauges; its
    counters stay, as counters must)."""
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid, str(directory))


class Metrics:
    """One worker's metrics: written to its file in the server's directory; ``render``
    reads every worker's files."""

    def __init__(self, directory: Path, model_info: dict[str, str] | None = None) -> None:
        if os.environ.get(ENV) != str(directory):
            raise RuntimeError(f"{ENV} must be {directory} before the metrics are made "
                               "(metrics.create_directory)")
        from prometheus_client import CollectorRegistry, Counter, Histogram, Info
        from prometheus_client.multiprocess import MultiProcessCollector

        self._registry: CollectorRegistry = CollectorRegistry()
        MultiProcessCollector(self._registry, path=str(directory))
        if model_info:  # in this worker's registry: the same in every worker, not in files
            Info("trainship_model", "The model served.",
                 registry=self._registry).info(model_info)
        # registry=None: the values live in the files, which the collector above reads
        self._requests = Counter("trainship_requests_total", "Requests by path and status.",
                                 ["path", "status"], registry=None)
        self._latency = Histogram("trainship_request_seconds", "Latency of /invocations.",
                                  buckets=LATENCY_BUCKETS, registry=None)
        self._errors = Counter("trainship_errors_total",
                               "/invocations answered with 4xx or 5xx.", registry=None)
        self._batch_requests = Histogram("trainship_batch_requests",
                                         "Requests per predict call.",
                                         buckets=BATCH_BUCKETS, registry=None)
        self._batch_rows = Counter("trainship_batch_rows_total", "Rows predicted.",
                                   registry=None)
        self._children: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def observe(self, route: str, status: int, seconds: float) -> None:
        """One answer: ``route`` is a route's path or ``OTHER``, ``status`` the one sent."""
        key = (route, status)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.setdefault(key, self._requests.labels(route,
                                                                             str(status)))
        child.inc()
        if route == INVOCATIONS:
            self._latency.observe(seconds)
            if status >= 400:
                self._errors.inc()

    def batch(self, requests: int, rows: int) -> None:
        """One predict call for ``requests`` requests with ``rows`` rows in all."""
        self._batch_requests.observe(requests)
        self._batch_rows.inc(rows)

    def render(self) -> bytes:
        """The text exposition of every worker's metrics."""
        from prometheus_client import generate_latest

        return generate_latest(self._registry)
