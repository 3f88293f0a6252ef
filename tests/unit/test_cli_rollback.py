"""`trainship rollback NAME --to N` against a fake API, run as a user runs it: the body it
sends, a refusal printed whole (EXIT_REFUSED), and a rollback followed to its end
like `trainship deploy`."""

from __future__ import annotations

from pathlib import Path

from tests.unit.fake_api import FakeApi, json_reply, record, run
from trainship import terminal

ACCEPTED = {"deployment_id": "d-0123456789abcdef", "status": "RUNNING",
            "execution_arn": "arn:x", "status_url": "/deployments/d-0123456789abcdef"}


def test_a_refusal_is_printed_whole_and_nothing_is_followed(tmp_path: Path,
                                                            fake_api: FakeApi) -> None:
    fake_api.routes["POST", "/models/test_model/rollback"] = lambda body: json_reply(409, {
        "error": "VersionAlreadyLive", "message": "test_model v2 is already live",
        "details": "versions of test_model: 2, 1", "help": "name another version"})
    proc = run(tmp_path, "rollback", "test_model", "--to", "2", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_REFUSED
    assert "VersionAlreadyLive" in proc.stderr and "name another version" in proc.stderr
    assert fake_api.seen == [("POST", "/models/test_model/rollback", {"version": "2"})]


def test_a_rollback_is_followed_to_its_result(tmp_path: Path, fake_api: FakeApi) -> None:
    fake_api.routes["POST", "/models/test_model/rollback"] = lambda body: json_reply(
        202, ACCEPTED)
    done = record("SUCCEEDED", steps=[{"name": "PrepareRollback", "status": "SUCCEEDED"}],
                  result={"status": "SUCCEEDED", "deployment_id": "d-0123456789abcdef",
                          "inference_url": "http://127.0.0.1:9", "model_name": "test_model",
                          "model_version": "1", "image_uri": "img@sha256:0",
                          "deployment_time_seconds": 3.2})
    fake_api.routes["GET", "/deployments/d-0123456789abcdef"] = lambda body: json_reply(
        200, done)
    proc = run(tmp_path, "rollback", "test_model", "--to", "1", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_OK, proc.stderr
    assert "model_version:" in proc.stdout and "http://127.0.0.1:9" in proc.stdout
    proc = run(tmp_path, "rollback", "test_model", "--to", "1", "--no-wait",
               "--api", fake_api.url)
    assert proc.returncode == 0 and proc.stdout.strip() == "d-0123456789abcdef"
