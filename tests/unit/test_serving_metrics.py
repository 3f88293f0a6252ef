"""/metrics of the inference service (issue 12): a real forked server over real HTTP.

Every answer is counted with the status it was sent with, under its route or ``other``
(bounded series), and a scrape of any worker sees the requests every worker answered
(prometheus_client's multiprocess mode, one directory per server under TMPDIR)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import save_logistic_model, start_serving
from trainship.serving import REQUIREMENTS

REPO = Path(__file__).resolve().parents[2]
ROW = b'{"inputs": [[0.1, -1.2, 0.3, 2.0]]}'


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_logistic_model(tmp_path_factory.mktemp("metrics") / "model")


def _start(model_dir: Path, tmpdir: Path, workers: int,
           **extra_env: str) -> tuple[subprocess.Popen[bytes], str]:
    return start_serving(model_dir, workers=workers, tmpdir=tmpdir, **extra_env)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = _start(model_dir, tmp_path_factory.mktemp("tmpdir"), workers=2,
                       TRAINSHIP_MODEL_NAME="Iris.v2", TRAINSHIP_MODEL_VERSION="3")
    try:
        yield url
    finally:
        _stop(proc)


def _request(url: str, method: str = "GET", body: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _requests_total(url: str) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {(s.labels["path"], s.labels["status"]): s.value
            for family in text_string_to_metric_families(text)
            if family.name == "trainship_requests"
            for s in family.samples if s.name == "trainship_requests_total"}


def test_a_404_is_counted_as_404_under_other(server: str) -> None:
    before = _requests_total(server)
    assert _request(f"{server}/no/such/path") == 404
    assert _request(f"{server}/no/such/path?x=1", "POST", b"{}") == 404
    assert _request(f"{server}/invocations") == 404  # not a GET route
    after = _requests_total(server)
    assert after.get(("other", "404"), 0) - before.get(("other", "404"), 0) == 3
    assert {path for path, _ in after} <= {"/invocations", "/ping", "/health", "/version",
                                          "/metrics", "/metadata", "other"}
    # nothing else was counted for these requests (the old code counted them as 200)
    assert {key: value for key, value in after.items() if key[0] != "/metrics"} == {
        **{key: value for key, value in before.items() if key[0] != "/metrics"},
        ("other", "404"): before.get(("other", "404"), 0) + 3}


def test_a_scrape_sees_the_requests_of_every_worker(server: str) -> None:
    before = _requests_total(server).get(("/invocations", "200"), 0)
    bad_before = _requests_total(server).get(("/invocations", "400"), 0)
    # each request on a new connection: the kernel spreads them over both workers
    statuses = [_request(f"{server}/invocations", "POST", ROW) for _ in range(40)]
    assert statuses == [200] * 40
    assert _request(f"{server}/invocations", "POST", b'{"nope": 1}') == 400
    for _ in range(4):  # whichever worker answers the scrape
        totals = _requests_total(server)
        assert totals[("/invocations", "200")] - before == 40
        assert totals[("/invocations", "400")] - bad_before == 1


def test_every_worker_labels_the_model_it_serves(server: str) -> None:
    """The container's TRAINSHIP_MODEL_NAME and TRAINSHIP_MODEL_VERSION (the Kubernetes
    and podman drivers set them) as ``trainship_model_info``, whichever worker answers."""
    for _ in range(4):
        with urllib.request.urlopen(f"{server}/metrics", timeout=30) as response:
            text = response.read().decode()
        [sample] = [s for family in text_string_to_metric_families(text)
                    if family.name == "trainship_model_info" for s in family.samples]
        assert (sample.labels, sample.value) == (
            {"model_name": "Iris.v2", "model_version": "3"}, 1.0)


def test_metrics_directory_is_per_server_and_cleaned(model_dir: Path, tmp_path: Path) -> None:
    stale = tmp_path / "trainship-metrics-4194305-gone"  # above any pid: its server is gone
    stale.mkdir()
    (stale / "counter_4194305.db").write_bytes(b"\0" * 16)
    proc, _ = _start(model_dir, tmp_path, workers=1)
    try:
        assert not stale.exists()
        [directory] = tmp_path.glob("trainship-metrics-*")
        assert directory.name.startswith(f"trainship-metrics-{proc.pid}-")
    finally:
        assert _stop(proc) == 0
    assert not directory.exists()


def test_the_service_requirements_are_pyprojects_pins() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert set(REQUIREMENTS) <= set(pyproject["project"]["dependencies"])


def test_workers_that_cannot_serve_fail_the_server_with_their_traceback(
        model_dir: Path, tmp_path: Path) -> None:
    """Each of two forked workers fails to bind (192.0.2.1, TEST-NET-1, is no address of
    this machine): the server exits non-zero (so an orchestrator restarts it) and stderr has
    the failing worker's traceback.
    A worker used to end with os._exit(0) whatever happened: exit 0, no traceback."""
    env = {**os.environ, "TMPDIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "trainship.serving", "--model-dir", str(model_dir),
         "--host", "192.0.2.1", "--port", "8080", "--workers", "2"],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0, proc.stderr[-2000:]
    # at least the first failure's traceback: the supervisor stops the other worker as soon
    # as one fails, which can be before that one got to print its own (seen in a clean clone)
    assert proc.stderr.count("Traceback (most recent call last)") >= 1, proc.stderr[-3000:]
    assert "Cannot assign requested address" in proc.stderr
    assert not any(tmp_path.glob("trainship-metrics-*")), "the metrics directory is left"
