"""What the canary story (tests/e2e/test_canary.py) uses: training scripts whose versions
answer differently, a steady stream of requests that records every answer, and reading an
execution's steps as time windows.

Every version predicts its own constant class for every row, so which version answered a
request is plain to see from the answer. The bad version raises in ``predict`` for a row whose
first feature is negative (the inference service answers a 500 naming the exception's type,
REFUSAL);
its logged input example is a row that works, so it passes its smoke test. The traffic sends
such rows half of the time (random, seeded: the front's weighted round-robin is
deterministic, so a strict alternation could send the canary only the good rows).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

# {label}: the class every row gets; {fail}: True makes rows with a negative first feature
# raise. A pyfunc of plain numpy: no framework to install, the same for all three versions.
SCRIPT = """
import mlflow
import mlflow.pyfunc
import numpy as np


class {refusal}(ValueError):  # the 500's document names it
    pass


class Constant(mlflow.pyfunc.PythonModel):
    def __init__(self, label, fail):
        self.label, self.fail = label, fail

    def predict(self, context, model_input, params=None):
        rows = np.asarray(model_input, dtype=float)
        if self.fail and (rows[:, 0] < 0).any():
            raise {refusal}("the first feature is negative")
        return np.full(len(rows), self.label)


with mlflow.start_run():
    mlflow.pyfunc.log_model(name="model", python_model=Constant({label}, {fail}),
                            input_example=np.array([[5.1, 3.5, 1.4, 0.2]]))
"""
# the type of what the bad version raises: the inference service's 500 names it
# (exception_type), so an error the clients see is plainly the bad version's
REFUSAL = "CanaryBadRow"
GOOD_ROW = [5.1, 3.5, 1.4, 0.2]
BAD_ROW = [-5.1, 3.5, 1.4, 0.2]  # the bad version raises on it; the others answer it


def script(label: int, fail: bool = False) -> str:
    return SCRIPT.format(label=label, fail=fail, refusal=REFUSAL)


@dataclass
class Answer:
    """One request of the traffic: when it was sent and answered (time.time()), whether its
    row was one the bad version refuses, and what came back (``status`` None: no HTTP answer
    at all, ``failure`` says why)."""

    sent: float
    answered: float
    bad_row: bool
    status: int | None
    body: Any = None
    failure: str = ""

    @property
    def prediction(self) -> Any:
        if self.status == 200 and isinstance(self.body, dict):
            predictions = self.body.get("predictions")
            if isinstance(predictions, list) and len(predictions) == 1:
                return predictions[0]
        return None


def _send(conn: http.client.HTTPConnection, row: list[float]) -> tuple[int, Any]:
    conn.request("POST", "/invocations", body=json.dumps({"inputs": [row]}),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    raw = response.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return response.status, body


def _client(url: str, per_second: float, seed: int, answers: list[Answer],
            stop: threading.Event) -> None:
    """Requests at ``per_second`` over one keep-alive connection (a new one after a failure:
    the front picks a version per request, not per connection)."""
    address = urlparse(url)
    pick = random.Random(seed)
    conn = http.client.HTTPConnection(str(address.hostname), address.port, timeout=30)
    period = 1.0 / per_second
    due = time.monotonic()
    try:
        while not stop.is_set():
            bad = pick.random() < 0.5
            sent = time.time()
            try:
                status, body = _send(conn, BAD_ROW if bad else GOOD_ROW)
                answers.append(Answer(sent, time.time(), bad, status, body))
            except (OSError, http.client.HTTPException) as exc:  # what must never happen
                answers.append(Answer(sent, time.time(), bad, None, failure=repr(exc)))
                conn.close()
            due = max(due + period, time.monotonic() - period)  # no burst after a stall
            stop.wait(max(0.0, due - time.monotonic()))
    finally:
        conn.close()


@contextlib.contextmanager
def steady_traffic(url: str, per_second: float = 60.0, clients: int = 3,
                   seed: int = 15) -> Iterator[list[Answer]]:
    """``per_second`` requests in all to ``url`` from ``clients`` threads for as long as the
    block runs; every answer (appended as it comes, in no particular order across clients)."""
    answers: list[Answer] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_client, daemon=True,
                                args=(url, per_second / clients, seed + i, answers, stop))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield answers
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def stamp(text: str) -> float:
    """An ISO 8601 timestamp of a record (UTC) as time.time() counts."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def windows(record: dict[str, Any], name: str) -> list[tuple[float, float]]:
    """Each time the execution was in state ``name``: (entered, left) in time.time() terms,
    left being when the next state was entered (or the execution stopped)."""
    steps = record["steps"]
    found = []
    for i, step in enumerate(steps):
        if step["name"] != name:
            continue
        if i + 1 < len(steps):
            left = stamp(steps[i + 1]["entered"])
        else:
            left = stamp(record["stopped_at"])
        found.append((stamp(step["entered"]), left))
    return found


def between(answers: list[Answer], start: float, end: float) -> list[Answer]:
    """The answers to requests sent after ``start`` and answered before ``end``."""
    return [a for a in answers if a.sent >= start and a.answered <= end]
