"""`trainship models [NAME]` as a user runs it, against a fake API answering with the
records the real API answers with (trainship.records)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.unit.fake_api import FakeApi, json_reply, one_line, run
from trainship import terminal
from trainship.errors import ModelNotFound, RegistryUnavailable
from trainship.records import ModelDetail, ModelList, answer

LIVE = {"model_name": "test_model", "serving_name": "test-model", "live_version": "2",
        "inference_url": "http://127.0.0.1:9100", "image_uri": "bundle:test-model-v2",
        "target": "process", "live_since": "2026-12-01T11:00:00Z", "deployment_id": "d-2"}
V1 = {"version": "1", "live": False, "created_at": "2026-12-01T09:58:00Z", "run_id": "r1",
      "image_uri": "bundle:test-model-v1",
      "served": [{"from": "2026-12-01T10:00:00Z", "to": "2026-12-01T11:00:00Z",
                  "deployment_id": "d-1"}]}
V2 = {"version": "2", "live": True, "created_at": "2026-12-01T10:58:00Z", "run_id": "r2",
      "image_uri": "bundle:test-model-v2",
      "served": [{"from": "2026-12-01T11:00:00Z", "to": None, "deployment_id": "d-2"}]}
V3 = {"version": "3", "live": False, "created_at": "2026-12-01T11:30:00Z", "run_id": "r3",
      "image_uri": None, "served": []}


def serve(fake_api: FakeApi, path: str, record: Any) -> None:
    fake_api.routes["GET", path] = lambda body: json_reply(200, answer(record))


def test_models_prints_a_table_of_what_serves(tmp_path: Path, fake_api: FakeApi) -> None:
    other = {**LIVE, "model_name": "churn", "serving_name": "churn", "live_version": "7",
             "inference_url": "http://127.0.0.1:9200", "live_since": None}
    serve(fake_api, "/models", ModelList.model_validate({"models": [other, LIVE]}))
    proc = run(tmp_path, "models", "--api", fake_api.url)
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split() == ["MODEL", "SERVING", "NAME", "LIVE", "TARGET", "SINCE",
                              "INFERENCE", "URL"]
    assert rows[0].split() == ["churn", "churn", "7", "process", "-", "http://127.0.0.1:9200"]
    assert rows[1].split() == ["test_model", "test-model", "2", "process",
                               "2026-12-01T11:00:00Z", "http://127.0.0.1:9100"]
    # the columns line up
    assert {row.index("http://") for row in rows} == {header.index("INFERENCE URL")}


def test_models_json_is_the_list_of_models(tmp_path: Path, fake_api: FakeApi) -> None:
    serve(fake_api, "/models", ModelList.model_validate({"models": [LIVE]}))
    proc = run(tmp_path, "models", "--api", fake_api.url, "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [LIVE]


def test_no_model_serving_says_so(tmp_path: Path, fake_api: FakeApi) -> None:
    serve(fake_api, "/models", ModelList(models=[]))
    proc = run(tmp_path, "models", "--api", fake_api.url)
    assert proc.returncode == 0 and proc.stdout == ""
    assert "no model serves" in proc.stderr


def test_models_name_shows_the_versions_and_when_each_served(tmp_path: Path,
                                                            fake_api: FakeApi) -> None:
    v1 = {**V1, "served": [*V1["served"], {"from": "2026-12-01T12:00:00Z", "to": None,
                                            "deployment_id": "d-4"}]}
    serve(fake_api, "/models/test_model",
          ModelDetail.model_validate({**LIVE, "versions": [V3, V2, v1]}))
    proc = run(tmp_path, "models", "test_model", "--api", fake_api.url)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "test_model (serving name test-model)" in out
    assert "live version:   2 since 2026-12-01T11:00:00Z (deployment d-2)" in out
    assert "inference_url:  http://127.0.0.1:9100" in out
    lines = out.splitlines()
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["VERSION", "LIVE", "REGISTERED", "SERVED"]
    assert table[1].split() == ["3", "2026-12-01T11:30:00Z", "never"]
    assert table[2].split() == ["2", "*", "2026-12-01T10:58:00Z", "2026-12-01T11:00:00Z",
                                "-", "now", "(d-2)"]
    assert table[3].split() == ["1", "2026-12-01T09:58:00Z", "2026-12-01T10:00:00Z", "-",
                                "2026-12-01T11:00:00Z", "(d-1)"]
    assert table[4].split() == ["2026-12-01T12:00:00Z", "-", "now", "(d-4)"]  # a rollback


def test_a_model_that_serves_nothing(tmp_path: Path, fake_api: FakeApi) -> None:
    idle = {**LIVE, **dict.fromkeys(("live_version", "inference_url", "image_uri", "target",
                                     "live_since", "deployment_id"))}
    serve(fake_api, "/models/Iris.v2",
          ModelDetail.model_validate({**idle, "model_name": "Iris.v2", "versions": [V3]}))
    proc = run(tmp_path, "models", "Iris.v2", "--api", fake_api.url)
    assert proc.returncode == 0, proc.stderr
    assert "live version:   none: the model serves nothing" in proc.stdout
    json_proc = run(tmp_path, "models", "Iris.v2", "--api", fake_api.url, "--output", "json")
    assert json.loads(json_proc.stdout)["live_version"] is None


def test_an_unknown_model_prints_the_error_document(tmp_path: Path, fake_api: FakeApi) -> None:
    doc = ModelNotFound("No registered model 'test-model'").document().model_dump()
    fake_api.routes["GET", "/models/test-model"] = lambda body: json_reply(404, doc)
    proc = run(tmp_path, "models", "test-model", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_REFUSED == 3
    assert "error:   ModelNotFound (HTTP 404)" in proc.stderr
    assert "No registered model 'test-model'" in proc.stderr and "help:" in proc.stderr
    proc = run(tmp_path, "models", "test-model", "--api", fake_api.url, "--output", "json")
    assert proc.returncode == 3 and json.loads(proc.stdout)["error"] == "ModelNotFound"


def test_mlflow_unavailable_is_one_line_and_exit_4(tmp_path: Path, fake_api: FakeApi) -> None:
    doc = RegistryUnavailable("MLflow did not answer").document().model_dump()
    fake_api.routes["GET", "/models"] = lambda body: json_reply(503, doc)
    proc = run(tmp_path, "models", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_UNAVAILABLE == 4
    assert "HTTP 503 (RegistryUnavailable MLflow did not answer)" in one_line(proc)


def test_without_a_local_stack(tmp_path: Path) -> None:
    proc = run(tmp_path, "models")
    assert proc.returncode == terminal.EXIT_UNAVAILABLE
    assert "the local stack is not running" in one_line(proc)
