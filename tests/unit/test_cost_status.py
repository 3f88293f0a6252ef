"""The cost receipt in a deployment's status record (the API's answer, the archive) and in
`trainship status` (text and --output json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.unit.fake_api import FakeApi, json_reply, run
from trainship import terminal
from trainship.cost import receipt
from trainship.deployments.store import record_of
from trainship.records import DeploymentRecord, answer, cost_json

HISTORY = Path(__file__).parent / "data" / "history_iris_local.json"  # see test_cost.py
ARN = "arn:aws:states:us-east-1:123456789012:execution:TrainAndDeploy:d-0123456789abcdef"
# the recorded run's output (PromoteModel's result)
RESULT = {
    "status": "SUCCEEDED",
    "deployment_id": "d-70dfbe77690d4fe8",
    "inference_url": "http://127.0.0.1:57049",
    "invocations_url": "http://127.0.0.1:57049/invocations",
    "model_name": "iris_cost",
    "serving_name": "iris-cost",
    "model_version": "1",
    "model_uri": "models:/m-feccf377bd5f444891cf7a2fb8149008",
    "run_id": "73b3f857187448339b95d9c7b80eb888",
    "image_uri": "/home/u/.trainship/registry/trainship-models:iris-cost-v1@sha256:"
                 "b3b7ba1b70fbf7fcf30a1c2b0da81d7c7a6759403a6aefb853eaf98839988079",
    "alias": "live",
    "live": True,
    "deployment_time_seconds": 24.9,
}


def recorded() -> list[dict[str, Any]]:
    return list(json.loads(HISTORY.read_text()))


def execution(status: str) -> dict[str, Any]:
    return {"name": "d-0123456789abcdef", "executionArn": ARN, "status": status,
            "startDate": "2026-11-28T15:39:55.346000+00:00",
            "stopDate": None if status == "RUNNING" else "2026-11-28T15:40:20.181000+00:00",
            "output": json.dumps(RESULT) if status == "SUCCEEDED" else None,
            "error": "ScriptFailed" if status == "FAILED" else None}


def test_a_finished_record_carries_its_receipt_through_the_api_model() -> None:
    for status in ("SUCCEEDED", "FAILED"):
        record = record_of(execution(status), recorded())
        cost = record["cost"]
        assert cost == cost_json(receipt(recorded()))
        assert cost["final"] and cost["state_transitions"] == 20
        assert answer(DeploymentRecord.model_validate(record))["cost"] == cost


def test_a_running_record_has_the_cost_so_far() -> None:
    # the history up to TrainModel's TaskStarted: the build is still running
    events = [e for e in recorded() if e["id"] <= 9]
    record = record_of(execution("RUNNING"), events)
    cost = record["cost"]
    assert not cost["final"]
    assert [b["step"] for b in cost["builds"]] == ["TrainModel"]
    assert cost["builds"][0]["billed_minutes"] >= 1  # counted up to now
    assert [f["function"] for f in cost["lambda_functions"]] == ["ValidateRequest"]


def test_print_cost_shows_every_part_and_the_total(capsys: Any) -> None:
    terminal.print_cost(cost_json(receipt(recorded())))
    out = capsys.readouterr().out
    assert out.startswith("cost: $0.020545 at AWS list prices (us-east-1, prices as of ")
    assert "state transitions          20" in out
    assert "Lambda RegisterModel       1 call, 2955 ms x 1024 MB = 2.955 GB-s" in out
    assert "Lambda CheckRollout        4 calls, 33 ms x 512 MB = 0.0165 GB-s" in out
    assert "CodeBuild TrainModel       14.4 s -> 1 min" in out
    assert "build minutes              2 min LINUX_CONTAINER GENERAL1_MEDIUM    $0.020000" in out
    assert "not counted: free tiers" in out and "data transfer" in out


def test_an_unpriced_build_is_shown_as_such(capsys: Any) -> None:
    cost = cost_json(receipt(recorded()))
    cost["builds"][1]["usd"] = None
    cost["unpriced"] = ["BuildImage build x: 1 min on ARM_CONTAINER BUILD_GENERAL1_LARGE"]
    terminal.print_cost(cost)
    out = capsys.readouterr().out
    assert "CodeBuild BuildImage       2.7 s -> 1 min" in out and "(no price)" in out
    assert "  not priced: BuildImage build x: 1 min on ARM_CONTAINER" in out


def test_status_prints_the_receipt_and_json_has_it(tmp_path: Path, fake_api: FakeApi) -> None:
    record = record_of(execution("SUCCEEDED"), recorded())
    fake_api.routes["GET", "/deployments/d-0123456789abcdef"] = \
        lambda body: json_reply(200, record)
    proc = run(tmp_path, "status", "d-0123456789abcdef", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_OK, proc.stderr
    assert "\ncost: $0.020545 at AWS list prices" in proc.stdout
    assert "Lambda ValidateRequest" in proc.stdout
    proc = run(tmp_path, "status", "d-0123456789abcdef", "--api", fake_api.url,
               "--output", "json")
    assert json.loads(proc.stdout)["cost"] == record["cost"]
