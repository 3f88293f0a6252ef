"""`trainship delete` against a fake API, as a user runs it: the DELETE it sends, waiting
like `trainship deploy` and the removal it reports, --purge, --no-wait, and a refusal."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.fake_api import FakeApi, json_reply, run
from trainship import terminal

ID = "d-0123456789abcdef"
ACCEPTED = {"deployment_id": ID, "status": "RUNNING", "execution_arn": "arn",
            "status_url": f"/deployments/{ID}"}
REMOVED = {"status": "SUCCEEDED", "action": "delete", "deployment_id": ID,
           "model_name": "test_model", "serving_name": "test-model",
           "removed": ["process: front http://127.0.0.1:9 (process 7)"],
           "alias_removed": "2", "purged": False, "purged_versions": [],
           "purged_images": [], "message": "test_model is out of service: removed 1 item(s)"}


def test_delete_waits_and_reports_what_was_removed(tmp_path: Path, fake_api: FakeApi) -> None:
    fake_api.routes["DELETE", "/models/test_model"] = lambda body: json_reply(202, ACCEPTED)
    records = iter([{"deployment_id": ID, "status": "RUNNING",
                     "steps": [{"name": "Route", "status": "SUCCEEDED", "seconds": 0.0},
                               {"name": "RemoveModel", "status": "RUNNING"}]},
                    {"deployment_id": ID, "status": "SUCCEEDED", "result": REMOVED,
                     "steps": [{"name": "Route", "status": "SUCCEEDED", "seconds": 0.0},
                               {"name": "RemoveModel", "status": "SUCCEEDED", "seconds": 1.0},
                               {"name": "ModelRemoved", "status": "SUCCEEDED",
                                "seconds": 0.0}]}])
    fake_api.routes["GET", f"/deployments/{ID}"] = lambda body: json_reply(200, next(records))
    proc = run(tmp_path, "delete", "test_model", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_OK, proc.stderr
    assert "RemoveModel" in proc.stderr  # the progress, as for a deployment
    assert "removed:" in proc.stdout and "front http://127.0.0.1:9" in proc.stdout
    assert "try:" not in proc.stdout  # a delete has no URL to try
    assert fake_api.seen[0][:2] == ("DELETE", "/models/test_model")


def test_purge_and_no_wait(tmp_path: Path, fake_api: FakeApi) -> None:
    fake_api.routes["DELETE", "/models/Churn.v2?purge=true"] = lambda body: json_reply(
        202, ACCEPTED)
    proc = run(tmp_path, "delete", "Churn.v2", "--purge", "--no-wait", "--output", "json",
               "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_OK, proc.stderr
    assert json.loads(proc.stdout) == ACCEPTED
    assert [m for m, _, _ in fake_api.seen] == ["DELETE"]  # no waiting


def test_a_refused_delete_prints_the_error_document(tmp_path: Path, fake_api: FakeApi) -> None:
    fake_api.routes["DELETE", "/models/unknown_model"] = lambda body: json_reply(404, {
        "error": "ModelNotFound", "message": "The registry has no model 'unknown_model'",
        "details": "", "help": "List the models with `trainship models`"})
    proc = run(tmp_path, "delete", "unknown_model", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_REFUSED
    assert "ModelNotFound" in proc.stderr and "trainship models" in proc.stderr
