"""Canary rollouts end to end on the local stack (issue 15's "done when"), process mode, with
the CLI as a user runs it, under steady traffic (tests/e2e/canary.py: about 60 requests a
second, half of them rows the bad version refuses):

- v1 (predicts 1) is deployed with ``--rollout canary``: a first deployment has nothing to
  compare with and goes all at once.
- v2 predicts 2 but raises for half of the rows, while its input example works: it passes
  its smoke test, takes 10% of the traffic, and the first judgement rolls it back: the CLI
  exits with the deployment's failure, ``CanaryFailed``, whose details hold the numbers that
  decided (the new version's requests, errors, error rate). v1 answered every request
  throughout; the only errors the clients saw were v2's own 500s, while v2 had its share, on
  about a tenth of the requests; afterwards every answer is v1's, v2's server is gone and
  the registry's alias stays on 1.
- v2 again, healthy (version 3 in the registry): promoted through 10%, 50% and 100%, each
  step judged on its own requests (shown in the result and by ``trainship status``), at
  the same URL, which now answers 2; v1's server is retired.

Process mode only: container mode splits traffic with the same front (trainship.cluster.
front, shared by both local drivers), and its three image builds would add minutes to a
suite already over its time budget (docs/development.md).

The canary is asked for explicitly: the e2e stacks default to all at once
(TRAINSHIP_DEFAULT_ROLLOUT, tests/e2e/conftest.py)."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.canary import (
    REFUSAL,
    Answer,
    between,
    script,
    stamp,
    steady_traffic,
    windows,
)
from tests.e2e.day_two import answer, cli, listed, live, live_version, run
from trainship.client import Client
from trainship.cluster.process import ProcessDriver
from trainship.procs import pid_alive
from trainship.terminal import EXIT_FAILED, EXIT_OK

pytestmark = pytest.mark.e2e
MODEL = "canary_model"
STEPS = (10, 50, 100)
MIN_REQUESTS = 10  # at 10% of ~60 requests a second, a 4 s step sees about 24
MAX_ERROR_RATE = 0.05
CANARY = ["--target", "process", "--rollout", "canary",
          "--canary-steps", ",".join(map(str, STEPS)), "--canary-interval", "4",
          "--max-error-rate", str(MAX_ERROR_RATE), "--canary-min-requests", str(MIN_REQUESTS)]
AFTER = 3.0  # seconds of traffic after each deployment's end


class Servers:
    """Every serving process of the model seen while the block runs (polled), by pid."""

    def __init__(self, driver: ProcessDriver) -> None:
        self.driver = driver
        self.seen: dict[int, dict[str, Any]] = {}
        self.stop = threading.Event()

    def _poll(self) -> None:
        while not self.stop.is_set():
            for record in self.driver.records(MODEL):
                self.seen.setdefault(record["pid"], dict(record))
            self.stop.wait(0.2)

    @contextlib.contextmanager
    def watch(self) -> Iterator[Servers]:
        thread = threading.Thread(target=self._poll, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            thread.join(10)

    def pids(self, version: str) -> list[int]:
        return [pid for pid, record in self.seen.items() if record["version"] == version]


def deploy(api_url: str, work: Path, name: str) -> tuple[int, Any, float]:
    """``trainship deploy`` of ``name`` with the canary's options: exit code, JSON, when it
    returned."""
    code, out = cli(api_url, "deploy", name, "--model-name", MODEL, *CANARY, cwd=work)
    return code, out, time.time()


@pytest.fixture(scope="module")
def story(api: Client, local_stack: dict[str, Any], local_home: Path,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """v1 deployed; then, under steady traffic, the bad v2 and the healthy one in turn; what
    each returned, each execution's record, every answer the clients got and every server."""
    api_url = local_stack["api"]
    work = tmp_path_factory.mktemp("canary")
    (work / "v1.py").write_text(script(1))
    (work / "v2_bad.py").write_text(script(2, fail=True))
    (work / "v2_good.py").write_text(script(2))
    code, v1, _ = deploy(api_url, work, "v1.py")
    assert code == EXIT_OK, v1
    url = v1["inference_url"]
    driver = ProcessDriver(local_home / "serving")
    seen: dict[str, Any] = {"url": url, "v1": v1, "v1_servers": driver.records(MODEL)}
    servers = Servers(driver)
    started = time.monotonic()
    with servers.watch(), steady_traffic(url) as answers:
        seen["traffic_from"] = time.time()
        seen["bad_code"], seen["bad"], seen["bad_returned"] = deploy(api_url, work, "v2_bad.py")
        seen["bad_alias"], seen["bad_listed"] = live(local_stack, MODEL), listed(api_url, MODEL)
        seen["bad_servers"] = driver.records(MODEL)
        time.sleep(AFTER)
        seen["good_from"] = time.time()
        seen["good_code"], seen["good"], seen["good_returned"] = deploy(api_url, work,
                                                                         "v2_good.py")
        time.sleep(AFTER)
        seen["traffic_to"] = time.time()
    seen["seconds"] = time.monotonic() - started
    seen["answers"] = list(answers)
    seen["servers"] = servers
    for key in ("v1", "bad", "good"):
        if isinstance(seen[key], dict) and seen[key].get("deployment_id"):
            seen[f"{key}_record"] = api.get(seen[key]["deployment_id"])
    print(f"canary story: {len(answers)} requests in {seen['seconds']:.0f} s")
    return seen


def _names(record: dict[str, Any]) -> list[str]:
    return [step["name"] for step in record["steps"]]


def _is_v2_error(item: Answer) -> bool:
    """A 500 with the bad version's own error document (what its predict raised)."""
    body = item.body if isinstance(item.body, dict) else {}
    return (item.status == 500 and body.get("error_code") == "INTERNAL_ERROR"
            and body.get("exception_type") == REFUSAL)


def _details(doc: dict[str, Any]) -> dict[str, Any]:
    """CanaryFailed's details: JSON of the deciding verdict, the versions and the history."""
    details = json.loads(doc["details"])
    assert isinstance(details, dict), doc
    return details


def test_the_first_deployment_goes_all_at_once(story: dict[str, Any]) -> None:
    record = story["v1_record"]
    assert record["status"] == "SUCCEEDED"
    names = _names(record)
    assert "PromoteModel" in names and "ShiftTraffic" not in names, names
    assert not record["result"].get("canary"), record["result"]
    assert story["v1"]["model_version"] == "1"
    [server] = story["v1_servers"]
    assert server["version"] == "1" and server["url"] == story["url"]


def test_a_version_failing_half_of_its_predictions_is_rolled_back_as_canary_failed(
        story: dict[str, Any]) -> None:
    code, doc = story["bad_code"], story["bad"]
    assert code == EXIT_FAILED, doc
    assert doc["status"] == "FAILED" and doc["error"] == "CanaryFailed", doc
    assert doc["help"] and doc["message"], doc
    details = _details(doc)
    assert (details["new_version"], details["live_version"]) == ("2", "1"), details
    verdict = details["verdict"]
    assert verdict["action"] == "rollback" and verdict["reason"], verdict
    numbers = verdict["numbers"]
    assert numbers["share"] == STEPS[0] and numbers["step"] == 1, numbers
    [judged] = details["history"]  # the first step decided
    assert judged["numbers"] == numbers and judged["effective_share"] == STEPS[0], judged
    new = numbers["new"]
    # about half of v2's requests failed: its errors decided, over the limit
    assert new["errors"] >= 1 and new["requests"] >= new["errors"], new
    assert new["error_rate"] > MAX_ERROR_RATE and 0.2 <= new["error_rate"] <= 0.8, new
    assert numbers["old"]["errors"] == 0 and numbers["old"]["requests"] > new["requests"], \
        numbers
    record = story["bad_record"]
    names = _names(record)
    assert names.count("ShiftTraffic") == 1 and names.count("JudgeCanary") == 1, names
    assert "SmokeTestModel" in names and "RecordFailure" in names, names
    assert "PromoteModel" not in names, names
    assert record["error"]["error"] == "CanaryFailed"
    # the old version kept the URL and the alias, v2's server is gone (it was seen running)
    assert story["bad_alias"] == "1"
    still = story["bad_listed"]
    assert still["live_version"] == "1" and still["inference_url"] == story["url"], still
    assert still["deployment_id"] == story["v1"]["deployment_id"], still
    [v1] = story["bad_servers"]
    assert v1["version"] == "1" and v1["pid"] == story["v1_servers"][0]["pid"], v1
    assert story["servers"].pids("2"), "v2's server was never seen"
    assert not any(pid_alive(pid) for pid in story["servers"].pids("2"))


def test_v1_answered_throughout_and_clients_saw_errors_only_from_v2s_share(
        story: dict[str, Any]) -> None:
    record = story["bad_record"]
    phase = between(story["answers"], story["traffic_from"], story["good_from"])
    assert len(phase) > 200, len(phase)
    no_answer = [a for a in phase if a.status is None]
    assert not no_answer, no_answer[:3]  # never a refused or reset connection
    odd = [a for a in phase if a.status == 200 and a.prediction not in (1, 2)]
    assert not odd, odd[:3]
    errors = [a for a in phase if a.status != 200]
    assert errors, "the clients never met v2's failures"
    # every error is v2's own 500 on a row it refuses; v1 never failed one
    assert all(_is_v2_error(a) and a.bad_row for a in errors), \
        [(a.status, a.body) for a in errors if not _is_v2_error(a)][:3]
    # v2 answered (2 or its 500) only while it had a share: from the first ShiftTraffic
    # until the failed execution ended (RecordFailure gave v1 all of the traffic back)
    [(shifted, _)] = windows(record, "ShiftTraffic")
    ended = stamp(record["stopped_at"])
    from_v2 = [a for a in phase if a.prediction == 2 or a.status != 200]
    assert from_v2
    assert all(a.answered >= shifted and a.sent <= ended for a in from_v2), \
        [(a.sent - shifted, a.answered - ended) for a in from_v2
         if not (a.answered >= shifted and a.sent <= ended)][:5]
    # at the 10% step v2 took about a tenth of the requests
    [(waiting, judged)] = windows(record, "WaitForCanary")
    step = between(phase, waiting, judged)
    share = sum(1 for a in step if a.prediction == 2 or a.status != 200) / len(step)
    assert 0.05 <= share <= 0.17, (share, len(step))
    # the clients saw at least what the judgement counted (it measured part of their traffic)
    numbers = _details(story["bad"])["verdict"]["numbers"]
    assert len(from_v2) >= numbers["new"]["requests"], (len(from_v2), numbers)
    assert len(errors) >= numbers["new"]["errors"], (len(errors), numbers)
    # v1 answered throughout: never a pause of its answers
    v1_times = sorted(a.answered for a in phase if a.prediction == 1)
    gaps = [b - a for a, b in itertools.pairwise(v1_times)]
    assert max(gaps) < 5.0, max(gaps)
    assert v1_times[0] - story["traffic_from"] < 5.0
    # after the rollback every answer is v1's, bad rows included
    after = [a for a in phase if a.sent > ended]
    assert len(after) > 20 and all(a.prediction == 1 for a in after), \
        [(a.status, a.body) for a in after if a.prediction != 1][:3]
    assert any(a.bad_row for a in after)


def test_a_healthy_v2_is_promoted_through_every_step_at_the_same_url(
        story: dict[str, Any], local_stack: dict[str, Any], local_home: Path) -> None:
    code, result = story["good_code"], story["good"]
    assert code == EXIT_OK, result
    url = story["url"]
    assert result["status"] == "SUCCEEDED" and result["model_version"] == "3", result
    assert result["inference_url"] == url
    steps = result["canary"]
    assert [s["numbers"]["share"] for s in steps] == list(STEPS), steps
    assert [s["effective_share"] for s in steps] == list(STEPS), steps
    assert [s["action"] for s in steps] == ["next", "next", "promote"], steps
    for s in steps:  # each step judged on its own requests, none failed
        new = s["numbers"]["new"]
        assert new["requests"] >= MIN_REQUESTS and new["errors"] == 0, s
        assert s["reason"], s
    record = story["good_record"]
    names = _names(record)
    assert names.count("ShiftTraffic") == 3 and names.count("JudgeCanary") == 3, names
    assert names.index("PromoteModel") > max(i for i, n in enumerate(names)
                                             if n == "JudgeCanary"), names
    # the clients: no error at all; v3's share grew with the steps, then took everything
    phase = between(story["answers"], story["good_from"], story["traffic_to"])
    assert phase and all(a.status == 200 and a.prediction in (1, 2) for a in phase), \
        [(a.status, a.body, a.failure) for a in phase if a.status != 200][:3]
    shares = []
    for start, end in windows(record, "WaitForCanary"):
        step = between(phase, start, end)
        assert len(step) > 50, len(step)
        shares.append(sum(1 for a in step if a.prediction == 2) / len(step))
    assert 0.05 <= shares[0] <= 0.17 and 0.4 <= shares[1] <= 0.6 and shares[2] == 1.0, shares
    [(shifted, _)] = windows(record, "ShiftTraffic")[:1]
    assert all(a.prediction == 1 for a in phase if a.answered < shifted)
    after = [a for a in phase if a.sent > stamp(record["stopped_at"])]
    assert len(after) > 20 and all(a.prediction == 2 for a in after)
    assert any(a.bad_row for a in after)
    # the same URL serves version 3; v1's server is retired
    assert answer(url) == 2 and live_version(url) == "3"
    assert live(local_stack, MODEL) == "3"
    now = listed(local_stack["api"], MODEL)
    assert now["live_version"] == "3" and now["inference_url"] == url
    [v1] = story["v1_servers"]
    assert not pid_alive(v1["pid"])
    [v3] = ProcessDriver(local_home / "serving").records(MODEL)
    assert v3["version"] == "3" and v3["url"] == url and pid_alive(v3["pid"])
    # what `trainship status` shows: each step with its numbers
    shown = run("status", result["deployment_id"], "--api", local_stack["api"])
    assert shown.returncode == EXIT_OK, shown.stderr
    assert "canary: promoted after 3 of 3 steps" in shown.stdout, shown.stdout
    for i, (share, s) in enumerate(zip(STEPS, steps, strict=True), start=1):
        [row] = [line for line in shown.stdout.splitlines()
                 if line.strip().startswith(f"{i}/3 ")]
        assert f"{share}%" in row and s["action"] in row, row
        assert f" {s['numbers']['new']['requests']} " in row, row
