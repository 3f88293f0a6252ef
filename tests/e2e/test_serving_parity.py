"""trainship's inference service answers exactly as `mlflow models serve` on the same model."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
COLUMNS = ["a", "b", "c", "d"]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise AssertionError("server did not start")


def post(port: int, body: bytes, content_type: str) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=200, n_features=4, random_state=0)
    frame = pd.DataFrame(x, columns=COLUMNS)
    model = LogisticRegression().fit(frame, y)
    model_dir = tmp_path_factory.mktemp("parity") / "model"
    mlflow.sklearn.save_model(model, str(model_dir), serialization_format="cloudpickle",
                              signature=infer_signature(frame, model.predict(frame)))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(REPO)}
    ports = {"mlflow": _port(), "trainship": _port()}
    procs = [
        subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                          str(model_dir), "-h", "127.0.0.1", "-p", str(ports["mlflow"]),
                          "--env-manager", "local", "-w", "1"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True),
        subprocess.Popen([sys.executable, "-m", "trainship.serving", "--model-dir",
                          str(model_dir), "--port", str(ports["trainship"]), "--workers", "2"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True),
    ]
    try:
        for name, proc in zip(ports, procs, strict=True):
            _wait(ports[name], proc)
        yield ports
    finally:
        for proc in procs:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


ROWS = [[0.1, -1.2, 0.3, 2.0], [1.5, 0.2, -0.7, -0.1], [0.0, 0.0, 0.0, 0.0]]
REQUESTS = [
    ("dataframe_split", json.dumps({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}),
     "application/json"),
    ("dataframe_records", json.dumps({"dataframe_records": [dict(zip(COLUMNS, r, strict=True))
                                                            for r in ROWS]}),
     "application/json"),
    ("instances", json.dumps({"instances": [dict(zip(COLUMNS, r, strict=True)) for r in ROWS]}),
     "application/json"),
    ("inputs", json.dumps({"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}}),
     "application/json"),
    ("csv", "a,b,c,d\n" + "\n".join(",".join(map(str, r)) for r in ROWS), "text/csv"),
    ("json charset", json.dumps({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}),
     "application/json; charset=UTF-8"),
    ("missing column", json.dumps({"dataframe_split": {"columns": COLUMNS[:3],
                                                       "data": [r[:3] for r in ROWS]}}),
     "application/json"),
    ("wrong type", json.dumps({"dataframe_split": {"columns": COLUMNS,
                                                   "data": [["x", 1, 2, 3]]}}),
     "application/json"),
    ("unknown column", json.dumps({"dataframe_split": {"columns": [*COLUMNS, "e"],
                                                       "data": [[*r, 1.0] for r in ROWS]}}),
     "application/json"),
    ("bad csv", 'a,b,c,d\n"1,2,3,4\n', "text/csv"),
    ("unknown key", json.dumps({"rows": ROWS}), "application/json"),
    ("not json", "{nope", "application/json"),
    ("bad content type", "a,b", "application/xml"),
    ("bad charset", json.dumps({"inputs": []}), "application/json; charset=latin-1"),
]


def _sorted_set(match: re.Match[str]) -> str:
    return "{" + ", ".join(sorted(match.group(1).split(", "))) + "}"


@pytest.mark.parametrize(("name", "body", "content_type"), REQUESTS,
                         ids=[r[0] for r in REQUESTS])
def test_same_answers_as_mlflow(servers: dict[str, int], name: str, body: str,
                                content_type: str) -> None:
    theirs = post(servers["mlflow"], body.encode(), content_type)
    ours = post(servers["trainship"], body.encode(), content_type)
    assert ours[0] == theirs[0], (name, ours, theirs)
    if theirs[0] == 200:
        assert json.loads(ours[1]) == json.loads(theirs[1])
    else:
        try:
            theirs_doc, ours_doc = json.loads(theirs[1]), json.loads(ours[1])
        except ValueError:
            assert ours[1] == theirs[1]
        else:
            # a superset of MLflow's document: the same error_code and message, its other
            # keys but the traceback (stack_trace, only with --debug), and for a 400 the
            # list of what is wrong (docs/api.md, The inference URL)
            theirs_doc.pop("stack_trace", None)
            for doc in (theirs_doc, ours_doc):  # MLflow prints a set: its order varies
                doc["message"] = re.sub(r"\{('[^{}]*')\}", _sorted_set, doc["message"])
            assert {k: ours_doc[k] for k in theirs_doc} == theirs_doc, (name, ours_doc)
            assert "stack_trace" not in ours_doc
            if ours[0] == 400:
                assert ours_doc["errors"], (name, ours_doc)


def test_concurrent_callers_get_their_own_predictions(servers: dict[str, int]) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    bodies = [rng.normal(size=(int(n), 4)).round(3).tolist() for n in rng.integers(1, 6, 60)]

    def call(rows: list[list[float]], port: int) -> list[int]:
        status, raw = post(port, json.dumps({"dataframe_split": {
            "columns": COLUMNS, "data": rows}}).encode(), "application/json")
        assert status == 200
        return list(json.loads(raw)["predictions"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        ours = list(pool.map(lambda rows: call(rows, servers["trainship"]), bodies))
    theirs = [call(rows, servers["mlflow"]) for rows in bodies]
    assert ours == theirs
    with urllib.request.urlopen(f"http://127.0.0.1:{servers['trainship']}/metrics") as r:
        metrics = r.read().decode()
    assert "trainship_batch_requests_count" in metrics
    assert 'trainship_requests_total{path="/invocations",status="200"}' in metrics
