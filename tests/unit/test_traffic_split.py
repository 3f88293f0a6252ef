"""A canary's traffic split on the local stack: the weighted target file and its smooth
weighted round-robin (trainship.cluster.weighted), the real proxy process sharing requests
between two versions (per request, keep-alive connections included), the local drivers'
set_traffic / scrape / promote / discard. The kubernetes driver's split is in
test_kubernetes_canary.py."""

from __future__ import annotations

import http.client
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import LocalServer
from trainship.cluster import front, live_by_records, process
from trainship.cluster import podman as podman_module
from trainship.cluster.handles import PodmanHandle, ProcessHandle, RecordState
from trainship.cluster.manifests import WorkloadSpec
from trainship.cluster.podman import PodmanDriver
from trainship.cluster.process import ProcessDriver
from trainship.cluster.weighted import Picker, parse, render
from trainship.procs import free_port

# --- the target file and the pick ----------------------------------------------------------


def test_a_single_port_is_all_the_traffic_as_before() -> None:
    assert parse("8001") == parse("8001\n") == ((8001, 100),)
    assert parse("") == parse("\n") == ()
    assert render([(8001, 100)]) == "8001"
    assert render([(8001, 70), (8002, 0)]) == "8001"  # one left: the old format


def test_weighted_lines_read_and_write() -> None:
    text = render([(8001, 70), (8002, 30)])
    assert text == "8001 70\n8002 30\n"
    assert parse(text) == ((8001, 70), (8002, 30))
    assert parse("8001 100\n8002 0\n") == ((8001, 100),)  # weight 0: out of the share
    assert render([]) == ""


@pytest.mark.parametrize("text", ["abc", "8001 x", "8001 10 20", "-1 10", "8001 -5"])
def test_a_target_file_that_does_not_read_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)


def test_smooth_weighted_round_robin_is_exact_and_spread() -> None:
    picker, targets = Picker(), ((1, 30), (2, 70))
    picks = [picker.pick(targets) for _ in range(100)]
    assert Counter(picks) == {1: 30, 2: 70}
    for start in range(0, 100, 10):  # every 10 picks: 3 and 7, never in one burst
        assert Counter(picks[start:start + 10]) == {1: 3, 2: 7}
    assert picks[:10] == [2, 1, 2, 2, 1, 2, 2, 2, 1, 2]  # the same sequence every time


def test_a_new_split_starts_a_new_sequence_and_exclusions_are_skipped() -> None:
    picker = Picker()
    assert picker.pick(((1, 100),)) == 1
    assert [picker.pick(((1, 50), (2, 50))) for _ in range(4)] == [1, 2, 1, 2]
    assert picker.pick(((1, 50), (2, 50)), exclude=[1]) == 2
    assert picker.pick(((1, 50),), exclude=[1]) == 0
    assert picker.pick(()) == 0


# --- the real proxy ------------------------------------------------------------------------

def backend(name: str) -> LocalServer:
    """A version that answers its own name (``/slow/S`` after S seconds), keep-alive."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

        def do_GET(self) -> None:
            if self.path.startswith("/slow/"):
                time.sleep(float(self.path.rsplit("/", 1)[1]))
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return LocalServer(Handler).start()


def port_of(server: LocalServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def get(port: int, path: str = "/") -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        conn.close()


def record(version: str, port: int, state: RecordState = "serving") -> ProcessHandle:
    return {"model_name": "iris", "serving_name": "iris", "version": version,
            "image_uri": "bundle:sha256:0", "deployment_id": f"d-{version}", "port": port,
            "url": "http://127.0.0.1:9000", "test_url": f"http://127.0.0.1:{port}",
            "state": state, "pid": 100 + int(version), "log": f"v{version}.log",
            "requirements": []}


Split = tuple[ProcessDriver, Path, int, ProcessHandle, ProcessHandle]


@pytest.fixture
def split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Split]:
    """The process driver's records of v1 (live, answers "one") and v2 (new, "two"), both
    real HTTP servers, behind the model's real front pointing at v1."""
    one, two = backend("one"), backend("two")
    monkeypatch.setattr(process, "stop_pid", lambda pid: None)  # not processes of ours
    driver = ProcessDriver(tmp_path)
    directory = tmp_path / "iris"
    started = front.ensure(directory, "iris")
    old, new = record("1", port_of(one)), record("2", port_of(two), "starting")
    for each in (old, new):
        driver._save(each)
    front.point(directory, old["port"])
    try:
        yield driver, directory, started["port"], old, new
    finally:
        front.stop(directory)
        one.close()
        two.close()


def test_a_30_70_split_over_100_requests(split: Split) -> None:
    driver, directory, port, old, new = split
    assert driver.set_traffic(new, 30) == 30  # the effective share: exactly the weight
    assert front.targets(directory) == ((old["port"], 70), (new["port"], 30))
    seen = Counter(get(port) for _ in range(100))  # a new connection each
    assert seen == {"one": 70, "two": 30}


def test_a_keep_alive_connection_is_split_per_request(split: Split) -> None:
    driver, _, port, _, new = split
    driver.set_traffic(new, 30)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/")
    conn.getresponse().read()
    sock = conn.sock
    seen: Counter[str] = Counter()
    for _ in range(100):
        conn.request("GET", "/")
        seen[conn.getresponse().read().decode()] += 1
    assert conn.sock is sock  # one client connection all along
    conn.close()
    assert 29 <= seen["two"] <= 31 and seen["one"] + seen["two"] == 100


def test_100_moves_everything_and_0_moves_it_back(split: Split) -> None:
    driver, directory, port, old, new = split
    assert driver.set_traffic(new, 100) == 100
    assert (directory / "target").read_text() == str(new["port"])  # the old format
    assert {get(port) for _ in range(10)} == {"two"}
    driver.set_traffic(new, 0)
    assert front.targets(directory) == ((old["port"], 100),)
    assert {get(port) for _ in range(10)} == {"one"}


def test_a_canary_takes_no_traffic_until_set_traffic(split: Split) -> None:
    _, directory, port, old, new = split  # v2 applied beside v1 (the fixture)
    assert front.targets(directory) == ((old["port"], 100),)
    assert {get(port) for _ in range(20)} == {"one"}
    assert get(new["port"]) == "two"  # it answers on its own port (the smoke test)


def test_promote_after_a_canary_gives_the_new_version_everything(split: Split) -> None:
    driver, directory, port, _, new = split
    driver.set_traffic(new, 50)
    assert Counter(get(port) for _ in range(10)) == {"one": 5, "two": 5}
    assert driver.promote(new) is None
    assert front.targets(directory) == ((new["port"], 100),)
    assert {get(port) for _ in range(10)} == {"two"}
    assert [(r["version"], r["state"]) for r in driver.records("iris")] == [("2", "serving")]


def test_discarding_a_canary_gives_the_live_version_everything(split: Split) -> None:
    driver, directory, port, old, new = split
    driver.set_traffic(new, 50)
    driver.discard(new)
    assert front.targets(directory) == ((old["port"], 100),)
    assert {get(port) for _ in range(10)} == {"one"}
    assert [(r["version"], r["state"]) for r in driver.records("iris")] == [("1", "serving")]


def test_a_canary_in_flight_is_drained_when_it_is_discarded(split: Split) -> None:
    driver, directory, port, _, new = split
    driver.set_traffic(new, 100)
    answers: list[str] = []
    slow = threading.Thread(target=lambda: answers.append(get(port, "/slow/1.0")))
    slow.start()
    time.sleep(0.3)  # the request is at the canary
    started = time.monotonic()
    driver.discard(new)
    waited = time.monotonic() - started
    slow.join(5)
    assert answers == ["two"]  # answered, not cut
    assert 0.4 < waited < 5  # until the answer was sent, not the grace period
    assert front.targets(directory) == ()  # no live version left in this test
    assert [r["version"] for r in driver.records("iris")] == ["1"]


def test_a_canary_that_refuses_connections_leaves_its_share_to_the_live_one(
        split: Split) -> None:
    driver, _, port, _, _ = split
    gone = record("3", free_port(), "starting")  # nothing listens there
    driver._save(gone)
    driver.set_traffic(gone, 50)
    assert {get(port) for _ in range(10)} == {"one"}  # never a 503


def test_set_traffic_refuses_nonsense(split: Split, tmp_path: Path) -> None:
    driver, _, _, _, new = split
    for percent in (-1, 101):
        with pytest.raises(ValueError, match="percentage"):
            driver.set_traffic(new, percent)
    alone = ProcessDriver(tmp_path / "other")
    (tmp_path / "other" / "iris").mkdir(parents=True)
    first = record("1", 8001, "starting")
    alone._save(first)
    with pytest.raises(ValueError, match="no other version of iris serves"):
        alone.set_traffic(first, 50)


def test_scrape_asks_every_version_on_its_own_port(split: Split) -> None:
    driver, _, _, _, _ = split
    driver._save(record("3", free_port(), "starting"))  # does not answer: left out
    assert driver.scrape("iris") == {"1": {"101": "one"}, "2": {"102": "two"}, "3": {}}


# --- the process driver end to end: real servers, a real front ----------------------------

SERVER = """#!/bin/sh
# stands in for the model's python: serves the files "version" (TRAINSHIP_MODEL_VERSION) and
# "ping" (readiness) on the --port it is given, as trainship.serving would serve the model
while [ $# -gt 0 ]; do [ "$1" = "--port" ] && PORT=$2; shift; done
DIR="$ROOT/v$TRAINSHIP_MODEL_VERSION"
mkdir -p "$DIR" && printf %s "$TRAINSHIP_MODEL_VERSION" > "$DIR/version" && : > "$DIR/ping"
exec "$PYTHON" -m http.server "$PORT" --bind 127.0.0.1 --directory "$DIR"
"""


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcessDriver]:
    """The process driver starting real servers (one per version) behind its real front."""
    script = tmp_path / "python"
    script.write_text(SERVER)
    script.chmod(0o755)
    monkeypatch.setenv("ROOT", str(tmp_path / "www"))
    monkeypatch.setenv("PYTHON", sys.executable)
    monkeypatch.setattr(process, "resolve_bundle", lambda uri: tmp_path / "bundle")
    monkeypatch.setattr(process, "prepare_environment", lambda reqs, cache: str(script))
    driver = ProcessDriver(tmp_path / "serving")
    try:
        yield driver
    finally:
        driver.stop_all()


def deploy(driver: ProcessDriver, version: str) -> tuple[ProcessHandle, str]:
    """Apply ``version`` as a canary; (its handle, the live version the driver named)."""
    applied = driver.apply(WorkloadSpec("iris", version, "bundle@sha256:0", canary=True))
    deadline = time.monotonic() + 15
    while not driver.status(applied.handle).ready and time.monotonic() < deadline:
        time.sleep(0.05)
    assert driver.status(applied.handle).ready
    return ProcessHandle(**applied.handle), applied.live_version  # type: ignore[typeddict-item]


def versions(driver: ProcessDriver, count: int = 10) -> Counter[str]:
    url = driver.records("iris")[0]["url"]
    return Counter(get(int(url.rsplit(":", 1)[1]), "/version") for _ in range(count))


def test_process_canaries_with_real_servers(served: ProcessDriver) -> None:
    driver = served
    one, live = deploy(driver, "1")
    assert live == ""  # a first deployment: nothing to share with
    assert driver.promote(one) is None and versions(driver) == {"1": 10}

    two, live = deploy(driver, "2")
    assert live == "1"
    assert versions(driver) == {"1": 10}  # applied, smoke-testable, but no traffic
    assert get(two["port"], "/version") == "2"
    assert driver.set_traffic(two, 50) == 50 and versions(driver) == {"1": 5, "2": 5}
    driver.discard(two)  # rolled back: the live version has everything again
    assert versions(driver) == {"1": 10}
    assert [r["version"] for r in driver.records("iris")] == ["1"]

    three, live = deploy(driver, "3")
    assert live == "1"
    assert driver.set_traffic(three, 30) == 30 and versions(driver) == {"1": 7, "3": 3}
    assert driver.set_traffic(three, 100) == 100 and versions(driver) == {"3": 10}
    assert driver.promote(three) is None
    assert versions(driver) == {"3": 10}
    assert [(r["version"], r["state"]) for r in driver.records("iris")] == [("3", "serving")]
    assert not process.pid_alive(one["pid"]) and not process.pid_alive(two["pid"])


# --- podman: the same front ----------------------------------------------------------------

def test_podman_shares_the_front_the_same_way(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    driver = PodmanDriver(tmp_path / "podman")
    ran: list[tuple[str, ...]] = []
    monkeypatch.setattr(driver, "_podman", lambda *args, check=True: ran.append(args))
    monkeypatch.setattr(front, "drain", lambda directory, port: 0)

    def pod_record(version: str, port: int, state: RecordState) -> PodmanHandle:
        return {"model_name": "iris", "serving_name": "iris", "version": version,
                "image_uri": "img", "deployment_id": f"d-{version}", "port": port,
                "url": "http://127.0.0.1:9000", "test_url": f"http://127.0.0.1:{port}",
                "state": state, "pod": f"iris-v{version}-pod-0",
                "manifest": "m.yaml"}

    old, new = pod_record("1", 8001, "serving"), pod_record("2", 8002, "starting")
    for each in (old, new):
        driver._save(each)
    directory = driver._dir("iris")
    driver.set_traffic(new, 10)
    assert front.targets(directory) == ((8001, 90), (8002, 10))
    driver.discard(new)
    assert front.targets(directory) == ((8001, 100),)
    assert ran == [("pod", "rm", "--force", "iris-v2-pod-0")]


def test_podman_applies_a_canary_beside_the_live_pod_without_traffic(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    driver = PodmanDriver(tmp_path / "podman")
    played: list[tuple[str, ...]] = []

    def podman(*args: str, check: bool = True) -> Any:
        played.append(args)
        return type("Done", (), {"returncode": 0, "stdout": "", "stderr": ""})()

    monkeypatch.setattr(driver, "_podman", podman)
    monkeypatch.setattr(podman_module.containers, "require_tools", lambda: None)
    monkeypatch.setattr(driver, "service", lambda model: {
        "port": 9000, "pid": 1, "url": "http://127.0.0.1:9000"})
    directory = driver._dir("iris")
    first = driver.apply(WorkloadSpec("iris", "1", "img:1", canary=True))
    assert first.live_version == ""
    driver.promote(first.handle)
    live_port = first.handle["port"]
    assert front.targets(directory) == ((live_port, 100),)
    second = driver.apply(WorkloadSpec("iris", "2", "img:2", canary=True))
    assert second.live_version == "1"
    assert front.targets(directory) == ((live_port, 100),)  # no traffic yet
    assert played[-1][:3] == ("kube", "play", "--replace")


# --- the live version an apply reports --------------------------------------------------

def test_the_live_version_of_an_apply_is_the_highest_other_that_serves() -> None:
    records = [record("1", 8001), record("3", 8003), record("4", 8004, "starting")]
    assert live_by_records("4", records) == "3"  # 4 itself, and starting ones, do not count
    assert live_by_records("3", records) == "1"
    assert live_by_records("1", [record("1", 8001)]) == ""
    assert live_by_records("10", [record("9", 8009), record("10", 8010, "starting"),
                                  record("2", 8002)]) == "9"  # by number, not by text
