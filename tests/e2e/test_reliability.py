"""Reliability: malformed input and bad scripts (faults, concurrency and secrets are in
test_reliability_faults.py).

Every case ends in a clear answer and a consistent record, and what serves stays up.
docs/reliability.md lists the cases and their observed outcomes.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import (
    assert_still_serving,
    deploy,
)
from trainship.client import Client
from trainship.errors import document_from_cause
from trainship.names import model_name_problem

pytestmark = pytest.mark.e2e


def raw_post(url: str, body: bytes, content_type: str = "application/json"
             ) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def executions(info: dict[str, Any]) -> int:
    client = boto3.client("stepfunctions", endpoint_url=info["stepfunctions"],
                          region_name="us-east-1", aws_access_key_id="local",
                          aws_secret_access_key="local")
    pages = client.get_paginator("list_executions").paginate(
        stateMachineArn=info["state_machine_arn"])
    return sum(len(page["executions"]) for page in pages)


# --- 1. request fuzzing ----------------------------------------------------------------

VALID = {"model_name": "fuzz", "script": "print(1)\n"}
CORRUPTIONS: list[tuple[str, Any]] = [
    # names MLflow takes but the rules refuse (test_model, Churn.v2 and the like are valid)
    ("model_name", st.one_of(st.integers(), st.none(), st.lists(st.text()),
                             st.text().filter(lambda s: model_name_problem(s) is not None),
                             st.just("a" * 129), st.just("-bad"), st.just("bad."),
                             st.just("a..b"), st.just("a/b"), st.just("a b"))),
    ("script", st.one_of(st.integers(), st.lists(st.integers()), st.just(""),
                         st.just(" \n\t "), st.just("x" * 200_000))),
    ("script_base64", st.one_of(st.text(alphabet="!@#$%^&*", min_size=1),
                                st.just("####"), st.just(base64.b64encode(b"\xff\xfe").decode()))),
    ("requirements", st.one_of(
        st.text(), st.integers(),
        st.lists(st.sampled_from(["--index-url=http://x", "-r req.txt", "pkg @ http://x/y.whl",
                                  "numpy; rm -rf /", "numpy$(id)", "a|b", "`id`", "",
                                  "x" * 300, "git+https://x/y"]), min_size=1, max_size=3),
        st.lists(st.just("numpy"), min_size=51, max_size=51))),
    ("timeout_seconds", st.one_of(st.integers(max_value=0), st.integers(min_value=7201),
                                  st.sampled_from(["abc", "", "ten", "1.5", 1.5, -3.2,
                                                   float("nan"), float("inf")]))),
    ("replicas", st.one_of(st.integers(max_value=0), st.integers(min_value=21),
                           st.sampled_from(["two", "", 2.5]))),
    ("resources", st.one_of(st.text(), st.fixed_dictionaries({"gpu": st.text(max_size=5)}),
                            st.fixed_dictionaries({"cpu": st.sampled_from(
                                ["lots", "", "1 core", "-1"])}))),
    ("unknown_field", st.one_of(st.integers(), st.text())),
    ("experiment_name", st.one_of(st.just(""), st.just("x" * 300), st.integers())),
]


@st.composite
def malformed_bodies(draw: Any) -> Any:
    kind = draw(st.integers(min_value=0, max_value=len(CORRUPTIONS) + 1))
    if kind == len(CORRUPTIONS):
        return draw(st.one_of(st.lists(st.integers()), st.text(), st.integers(), st.none()))
    if kind == len(CORRUPTIONS) + 1:
        dropped = draw(st.sampled_from(list(VALID)))
        return {k: v for k, v in VALID.items() if k != dropped}
    field, strategy = CORRUPTIONS[kind]
    body = dict(VALID)
    if field == "script_base64":
        body.pop("script")
    body[field] = draw(strategy)
    return body


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=malformed_bodies())
def test_fuzzed_request_bodies_get_4xx_documents(local_stack: dict[str, Any], api: Client,
                                                 body: Any) -> None:
    before = executions(local_stack)
    status, raw = raw_post(f"{local_stack['api']}/deployments", json.dumps(body).encode())
    assert 400 <= status < 500, (status, raw[:300])
    doc = json.loads(raw)
    assert {"error", "message", "details", "help"} <= set(doc)
    assert executions(local_stack) == before


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.one_of(st.binary(max_size=2000),
                     st.text(max_size=500).map(str.encode),
                     st.just(b'{"model_name": "x", "script": "print(1)"')))
def test_fuzzed_raw_bodies_get_400(local_stack: dict[str, Any], raw: bytes) -> None:
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict):
        return  # a JSON object is the other test's business
    status, body = raw_post(f"{local_stack['api']}/deployments", raw)
    assert status == 400, body[:300]
    assert json.loads(body)["error"] == "InvalidRequest"


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() |
                           st.text(max_size=20),
                           lambda children: st.lists(children, max_size=5) |
                           st.dictionaries(st.text(max_size=10), children, max_size=5),
                           max_leaves=20)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=st.one_of(
    JSON_VALUES.map(lambda v: (json.dumps(v).encode(), "application/json")),
    st.fixed_dictionaries({"inputs": JSON_VALUES}).map(
        lambda v: (json.dumps(v).encode(), "application/json")),
    st.fixed_dictionaries({"dataframe_split": JSON_VALUES}).map(
        lambda v: (json.dumps(v).encode(), "application/json")),
    st.fixed_dictionaries({"dataframe_records": JSON_VALUES}).map(
        lambda v: (json.dumps(v).encode(), "application/json")),
    st.binary(max_size=500).map(lambda b: (b, "application/json")),
    st.text(max_size=200).map(lambda t: (t.encode(), "text/csv")),
    st.binary(max_size=100).map(lambda b: (b, "application/x-unknown"))))
def test_fuzzed_inference_payloads_never_break_the_server(serving: dict[str, Any],
                                                          payload: tuple[bytes, str]) -> None:
    body, content_type = payload
    status, raw = raw_post(f"{serving['inference_url']}/invocations", body, content_type)
    assert status in (200, 400, 415, 500), (status, raw[:300])
    if status == 400:
        assert "error_code" in json.loads(raw)
    if status == 500:  # this model has no signature: what its predict raised (docs/api.md)
        document = json.loads(raw)
        assert document["error_code"] == "INTERNAL_ERROR" and document["exception_type"]
        assert "stack_trace" not in document  # no traceback without debug
    if status == 415:  # MLflow answers unsupported content types in plain text
        assert b"content type" in raw.lower()
    assert_still_serving(serving)


# --- 2. bad-script catalogue -------------------------------------------------------------

CATALOGUE: list[tuple[str, str, dict[str, Any], str, str, str]] = [
    # (case, script, extra request fields, error, step, text expected in details)
    ("syntax-error", "def broken(:\n", {}, "ScriptSyntaxError", "TrainModel", "broken"),
    ("no-mlflow-run", "print('training without MLflow')\n", {}, "NoMlflowRun",
     "RegisterModel", ""),
    ("no-model", "import mlflow\nwith mlflow.start_run():\n    mlflow.log_metric('acc', 1)\n",
     {}, "NoModelLogged", "RegisterModel", ""),
    ("missing-package", "import mlflow\nimport xgboost_not_installed_here\n", {},
     "MissingRequirement", "TrainModel", "xgboost_not_installed_here"),
    ("crash", "raise RuntimeError('disk full')\n", {}, "ScriptFailed", "TrainModel",
     "RuntimeError: disk full"),
    ("exit-nonzero", "import sys\nprint('giving up')\nsys.exit(3)\n", {}, "ScriptFailed",
     "TrainModel", "giving up"),
    ("endless-loop", "while True:\n    pass\n", {"timeout_seconds": 4}, "ScriptTimeout",
     "TrainModel", ""),
    ("huge-stdout", "import sys\nfor i in range(400000):\n    print('line', i, 'x' * 40)\n"
                    "sys.exit(1)\n", {}, "ScriptFailed", "TrainModel", "line 399999"),
    ("two-models", "import mlflow, mlflow.sklearn\nfrom sklearn.dummy import DummyClassifier\n"
                   "m = DummyClassifier().fit([[0], [1]], [0, 1])\nwith mlflow.start_run():\n"
                   "    mlflow.sklearn.log_model(m, name='a')\n"
                   "    mlflow.sklearn.log_model(m, name='b')\n", {}, "MultipleModelsLogged",
     "RegisterModel", "a ("),
    ("bad-requirement", "print(1)\n", {"requirements": ["trainship-no-such-package==0.0.1"]},
     "RequirementsInstallFailed", "TrainModel", "trainship-no-such-package"),
    ("reads-credentials", "import os\nfor k, v in sorted(os.environ.items()):\n"
                          "    print(k, '=', v)\n"
                          "key = os.environ.get('AWS_SECRET_ACCESS_KEY')\n"
                          "if key is None:\n    raise PermissionError('no credentials here')\n",
     {}, "ScriptFailed", "TrainModel", "PermissionError: no credentials here"),
    ("import-time-syntax", "import mlflow\nexec(compile('x = (', 'helper.py', 'exec'))\n", {},
     "ScriptSyntaxError", "TrainModel", "helper.py"),
]


def test_bad_script_catalogue(api: Client, local_home: Path, serving: dict[str, Any]) -> None:
    def run(case: tuple[str, str, dict[str, Any], str, str, str]) -> dict[str, Any]:
        name, script, extra, *_ = case
        return deploy(api, {"model_name": f"bad-{name}", "script": script, **extra})

    with ThreadPoolExecutor(max_workers=3) as pool:
        records = list(pool.map(run, CATALOGUE))
    outcomes = {}
    for (name, _, _, error, step, details), record in zip(CATALOGUE, records, strict=True):
        assert record["status"] == "FAILED", (name, record.get("result"))
        doc = record["error"]
        outcomes[name] = doc["error"]
        assert doc["error"] == error, (name, doc)
        assert doc["step"] == step, (name, doc)
        assert doc["help"] and doc["message"], name
        assert details in doc["details"], (name, doc["details"][-500:])
        assert len(doc["details"]) <= 6000, name
        assert not list((local_home / "serving" / f"bad-{name}").glob("v*.json")), name
    assert len(set(outcomes.values())) >= 8
    assert_still_serving(serving)


def test_empty_script_via_start_execution_fails_in_validate_request(
        local_stack: dict[str, Any]) -> None:
    client = boto3.client("stepfunctions", endpoint_url=local_stack["stepfunctions"],
                          region_name="us-east-1", aws_access_key_id="local",
                          aws_secret_access_key="local")
    arn = client.start_execution(stateMachineArn=local_stack["state_machine_arn"],
                                 name="empty-script-direct",
                                 input=json.dumps({"model_name": "empty", "script": ""}))[
        "executionArn"]
    for _ in range(60):
        described = client.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            break
        time.sleep(0.5)
    assert described["status"] == "FAILED"
    assert described["error"] == "InvalidRequest"
    # DeploymentFailed raised it: the Cause is Lambda's error payload around the document
    doc = document_from_cause(described["cause"])
    assert doc is not None and doc.error == "InvalidRequest"
    assert doc.step == "ValidateRequest" and "empty" in doc.message
