"""The local API Gateway runs the API function one invocation at a time, as Lambda does:
requests that arrive together (one thread each in the server) are each answered from their
own event, never from another's body (Powertools keeps the current request on the router)."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import pytest

import lambdas.api as api
from trainship.local import api_server
from trainship.local.api_server import proxy_event
from trainship.records import Accepted

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")
THREADS, ROUNDS = 4, 150


def test_concurrent_submissions_are_each_answered_from_their_own_body(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "_store", lambda: None)
    monkeypatch.setattr(api, "submit", lambda body, **_: Accepted(
        deployment_id="d-" + body["model_name"], status="RUNNING", execution_arn="arn",
        status_url="url"))
    crossed: list[str] = []
    barrier = threading.Barrier(THREADS)

    def client(i: int) -> None:
        barrier.wait()
        for r in range(ROUNDS):
            mine = f"m{i}x{r}"
            event = proxy_event("POST", "/deployments", {"Content-Type": "application/json"},
                                json.dumps({"model_name": mine, "script": "print(1)"}))
            answer: Any = json.loads(api_server.invoke(event)["body"])
            if answer.get("deployment_id") != f"d-{mine}":
                crossed.append(f"{mine} answered as {answer.get('deployment_id')}")

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows
    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert not crossed, f"{len(crossed)} of {THREADS * ROUNDS} crossed, e.g. {crossed[:3]}"
