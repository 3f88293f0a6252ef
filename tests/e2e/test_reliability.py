"""Reliability: malformed input, bad scripts, injected faults, concurrency, secrets.

Every case ends in a clear answer and a consistent record, and what serves stays up.
docs/reliability.md lists the cases and their observed outcomes.
"""

from __future__ import annotations

import base64
import json
import os
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

from tests.helpers import PLANTED_SECRET, deploy, post_json, wait_done
from trainship.client import ApiError, Client
from trainship.cluster.process import ProcessDriver
from trainship.local import stack
from trainship.names import model_name_problem
from trainship.procs import pid_alive

pytestmark = pytest.mark.e2e

QUICK_SCRIPT = """
import mlflow, mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier
X, y = load_iris(return_X_y=True)
with mlflow.start_run():
    mlflow.sklearn.log_model(DecisionTreeClassifier(max_depth=2).fit(X, y), name="model")
"""
ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


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


def history(info: dict[str, Any], execution_arn: str) -> list[dict[str, Any]]:
    client = boto3.client("stepfunctions", endpoint_url=info["stepfunctions"],
                          region_name="us-east-1", aws_access_key_id="local",
                          aws_secret_access_key="local")
    events: list[dict[str, Any]] = client.get_execution_history(
        executionArn=execution_arn, maxResults=1000)["events"]
    return events


@pytest.fixture(scope="module")
def serving(api: Client) -> dict[str, Any]:
    """A model that serves throughout; every bad case must leave it up."""
    record = deploy(api, {"model_name": "steady", "script": QUICK_SCRIPT})
    assert record["status"] == "SUCCEEDED", record.get("error")
    return record["result"]


def assert_still_serving(result: dict[str, Any]) -> None:
    status, body = post_json(f"{result['inference_url']}/invocations", ROW)
    assert status == 200 and len(body["predictions"]) == 1


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
    assert status in (200, 400, 415), (status, raw[:300])
    if status == 400:
        assert "error_code" in json.loads(raw)
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
    doc = json.loads(described["cause"])
    assert doc["step"] == "ValidateRequest" and "empty" in doc["message"]


# --- 3. fault injection ----------------------------------------------------------------------

def test_transient_faults_are_retried_and_the_deployment_succeeds(
        api: Client, local_home: Path, local_stack: dict[str, Any]) -> None:
    faults = {
        "ValidateRequest": {"error": "Lambda.ServiceException", "times": 1},
        "TrainModel": {"error": "CodeBuild.AWSCodeBuildException", "times": 1},
        "RegisterModel": {"error": "Lambda.TooManyRequestsException", "times": 2},
        "DeployModel": {"error": "TransientError", "times": 1},
        "PromoteModel": {"error": "Lambda.SdkClientException", "times": 1},
    }
    (local_home / "faults.json").write_text(json.dumps(faults))
    try:
        record = deploy(api, {"model_name": "flaky", "script": QUICK_SCRIPT})
    finally:
        (local_home / "faults.json").unlink(missing_ok=True)
    assert record["status"] == "SUCCEEDED", record.get("error")
    failed = [e for e in history(local_stack, record["execution_arn"])
              if e["type"] == "TaskFailed"]
    assert sorted(e["taskFailedEventDetails"]["error"] for e in failed) == sorted(
        f["error"] for f in faults.values() for _ in range(f["times"]))
    assert_still_serving(record["result"])


def test_permanent_fault_fails_cleanly_and_keeps_the_old_version(
        api: Client, local_home: Path, serving: dict[str, Any]) -> None:
    (local_home / "faults.json").write_text(json.dumps(
        {"PromoteModel": {"error": "Lambda.ServiceException", "cause": "injected outage",
                          "times": 10}}))
    try:
        record = deploy(api, {"model_name": "steady", "script": QUICK_SCRIPT})
    finally:
        (local_home / "faults.json").unlink(missing_ok=True)
    assert record["status"] == "FAILED"
    doc = record["error"]
    assert doc["error"] == "Lambda.ServiceException" and "injected outage" in doc["message"]
    assert doc["help"]
    # the new version was started, then removed; the old one serves at its URL
    records = ProcessDriver(local_home / "serving").records("steady")
    assert [r["url"] for r in records] == [serving["inference_url"]]
    assert_still_serving(serving)


def test_stopping_the_stack_mid_deployment_leaves_a_consistent_record(tmp_path: Path) -> None:
    home = tmp_path / "home"
    info = stack.up(home)
    client = Client(info["api"])
    accepted = client.submit({"model_name": "interrupted",
                              "script": "import time\nprint('working', flush=True)\n"
                                        "time.sleep(300)\n"})
    deadline = time.monotonic() + 120
    script_pids: list[int] = []
    while time.monotonic() < deadline and not script_pids:
        script_pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                       and _cmdline(p).endswith("train.py") and str(home) in _cwd(p)]
        time.sleep(0.5)
    assert script_pids, "the training script never started"
    assert stack.down(home)
    assert not any(pid_alive(pid) for pid in script_pids), "orphaned training script"
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit()
                and str(home) in _cmdline(p)], "orphaned processes of the stopped stack"
    info = stack.up(home)
    try:
        record = Client(info["api"]).get(accepted["deployment_id"])
        assert record["status"] == "FAILED"
        assert record["error"]["error"] == "LocalStackRestarted"
        assert record["error"]["help"]
    finally:
        stack.down(home)


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _cwd(proc: Path) -> str:
    try:
        return os.readlink(proc / "cwd")
    except OSError:
        return ""


# --- 4. concurrency --------------------------------------------------------------------------

def test_five_concurrent_deployments_of_one_model(api: Client, local_home: Path,
                                                  local_stack: dict[str, Any]) -> None:
    import mlflow

    with ThreadPoolExecutor(max_workers=5) as pool:
        records = list(pool.map(lambda _: deploy(api, {"model_name": "crowd",
                                                       "script": QUICK_SCRIPT}), range(5)))
    statuses = [r["status"] for r in records]
    assert statuses == ["SUCCEEDED"] * 5, [r.get("error") for r in records]
    versions = sorted(int(r["result"]["model_version"]) for r in records)
    assert versions == list(range(versions[0], versions[0] + 5))
    top = str(versions[-1])
    # deterministic: the highest version serves, alone; the alias points at it
    serving = ProcessDriver(local_home / "serving").records("crowd")
    assert [r["version"] for r in serving] == [top]
    assert all(pid_alive(r["pid"]) for r in serving)
    client = mlflow.MlflowClient(tracking_uri=local_stack["mlflow"])
    assert client.get_model_version_by_alias("crowd", "live").version == top
    for record in records:
        result = record["result"]
        if result["model_version"] != top and not result.get("superseded_by"):
            # it went live first and was replaced later: its server is gone
            with pytest.raises(OSError):
                urllib.request.urlopen(f"{result['inference_url']}/ping", timeout=2)


def test_idempotency_key_gives_one_execution(api: Client, local_stack: dict[str, Any]) -> None:
    body = {"model_name": "idem", "script": QUICK_SCRIPT}
    first = api.submit(body, idempotency_key="release-42")
    again = api.submit(body, idempotency_key="release-42")
    assert first == again
    record = wait_done(api, first["deployment_id"])
    after = api.submit(body, idempotency_key="release-42")
    assert after["deployment_id"] == first["deployment_id"]
    names = [d["deployment_id"] for d in api.list()]
    assert names.count(first["deployment_id"]) == 1
    assert record["status"] == "SUCCEEDED"
    with pytest.raises(ApiError) as conflict:
        api.submit({**body, "replicas": 2}, idempotency_key="release-42")
    assert conflict.value.status == 409
    assert conflict.value.document["error"] == "IdempotencyConflict"


# --- 5. secrets --------------------------------------------------------------------------

def test_no_secret_reaches_the_script_or_the_logs(api: Client) -> None:
    script = ("import os, sys\nfor k, v in sorted(os.environ.items()):\n    print(k, '=', v)\n"
              f"print('echo of a known secret: {PLANTED_SECRET}')\nsys.exit(1)\n")
    record = deploy(api, {"model_name": "snoop", "script": script})
    assert record["status"] == "FAILED"
    logs = api.logs(record["deployment_id"])
    assert "PATH =" in logs  # the environment was printed
    for text in (logs, json.dumps(record)):
        assert PLANTED_SECRET not in text
        assert "AWS_SECRET_ACCESS_KEY" not in text
        assert "TRAINSHIP_TEST_API_SECRET" not in text
    assert "echo of a known secret: [REDACTED]" in logs
