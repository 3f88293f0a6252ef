"""The CLI's side of inference tokens, as a user runs it against a fake API and a fake model:
`deploy --auth` sends the field, a result's token is printed and stored (0600, keyed by the
URL), `trainship predict` sends it (or --token / TRAINSHIP_INFERENCE_TOKEN), a 401 says what
to do, `trainship token rotate` follows the rotation and stores the new token, a refusal is
the API's error document."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fake_api import SCRIPT, FakeApi, json_reply, run
from trainship import terminal, token_store
from trainship.errors import AuthNotEnabled
from trainship.records import ModelDetail, answer

ID = "d-0123456789abcdef"
ACCEPTED = {"deployment_id": ID, "status": "RUNNING", "execution_arn": "arn",
            "status_url": f"/deployments/{ID}"}
UNAUTHENTICATED = {"error_code": "UNAUTHENTICATED", "error": "Unauthenticated",
                   "message": "a token is needed", "help": "send Authorization: Bearer"}


@pytest.fixture
def model() -> Iterator[FakeApi]:
    """The served model: /invocations answers 200 only with the token it is told."""
    fake = FakeApi()
    fake.token = "tsk_first"  # type: ignore[attr-defined]

    def invocations(body: Any) -> Any:
        sent = fake.headers[-1].get("Authorization")
        if sent != f"Bearer {fake.token}":  # type: ignore[attr-defined]
            return json_reply(401, UNAUTHENTICATED)
        return json_reply(200, {"predictions": [1]})

    fake.routes["POST", "/invocations"] = invocations
    try:
        yield fake
    finally:
        fake.close()


def result(model: FakeApi, **extra: Any) -> dict[str, Any]:
    return {"status": "SUCCEEDED", "deployment_id": ID, "inference_url": model.url,
            "invocations_url": f"{model.url}/invocations", "model_name": "auth_model",
            "serving_name": "auth-model", "model_version": "1", "model_uri": "models:/m-1",
            "run_id": "r", "image_uri": "bundle:auth-model-v1", "alias": "live",
            "deployment_time_seconds": 3.0, **extra}


def finished(fake_api: FakeApi, result: dict[str, Any]) -> None:
    fake_api.routes["GET", f"/deployments/{ID}"] = lambda body: json_reply(200, {
        "deployment_id": ID, "status": "SUCCEEDED", "result": result,
        "steps": [{"name": "PromoteModel", "status": "SUCCEEDED", "seconds": 1.0}]})


def live(fake_api: FakeApi, model: FakeApi) -> None:
    fake_api.routes["GET", "/models/auth_model"] = lambda body: json_reply(
        200, answer(ModelDetail.model_validate({
            "model_name": "auth_model", "serving_name": "auth-model", "live_version": "1",
            "inference_url": model.url, "image_uri": "bundle:auth-model-v1",
            "target": "process", "live_since": None, "deployment_id": ID, "versions": []})))


def deploy(tmp_path: Path, fake_api: FakeApi, *args: str) -> Any:
    fake_api.routes["POST", "/deployments"] = lambda body: json_reply(202, ACCEPTED)
    (tmp_path / "train.py").write_text(SCRIPT)
    return run(tmp_path, "deploy", "train.py", "--model-name", "auth_model", *args,
               "--api", fake_api.url)


def test_deploy_sends_auth_prints_and_stores_the_token_which_predict_sends(
        tmp_path: Path, fake_api: FakeApi, model: FakeApi) -> None:
    finished(fake_api, result(model, auth="token", inference_token="tsk_first"))
    proc = deploy(tmp_path, fake_api, "--auth", "token")
    assert proc.returncode == terminal.EXIT_OK, proc.stderr
    assert fake_api.seen[0][2]["auth"] == "token"
    assert "tsk_first" in proc.stdout and "auth:" in proc.stdout
    assert "Authorization: Bearer" in proc.stdout  # the try: line
    store = tmp_path / "config" / "trainship" / "tokens.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    assert str(store) in proc.stderr
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    assert token_store.load(model.url + "/", environ) == "tsk_first"

    live(fake_api, model)
    csv = tmp_path / "rows.csv"
    csv.write_text("a\n1.0\n")
    proc = run(tmp_path, "predict", "auth_model", "--csv", str(csv), "--api", fake_api.url)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"predictions": [1]}
    assert model.headers[-1]["Authorization"] == "Bearer tsk_first"
    assert model.headers[-1]["Content-Type"] == "text/csv"


def test_predict_token_option_and_variable_override_the_store_and_a_401_says_what_to_do(
        tmp_path: Path, fake_api: FakeApi, model: FakeApi) -> None:
    live(fake_api, model)
    token_store.save(model.url, "tsk_old", model_name="auth_model",
                     environ={"XDG_CONFIG_HOME": str(tmp_path / "config")})
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"inputs": [[1.0]]}))
    args = ("predict", "auth_model", "--json", str(request), "--api", fake_api.url)
    proc = run(tmp_path, *args)
    assert proc.returncode == 1
    assert "HTTP 401" in proc.stderr and "UNAUTHENTICATED" in proc.stderr
    assert "was refused" in proc.stderr and "token rotate auth_model" in proc.stderr
    assert run(tmp_path, *args, "--token", "tsk_first").returncode == 0
    proc = run(tmp_path, *args, TRAINSHIP_INFERENCE_TOKEN="tsk_first")
    assert proc.returncode == 0, proc.stderr
    # no token at all: the hint names the ways to give one
    proc = run(tmp_path, *args, XDG_CONFIG_HOME=str(tmp_path / "empty"))
    assert proc.returncode == 1 and "none is stored" in proc.stderr
    assert "Authorization" not in model.headers[-1]


def test_a_later_version_without_a_token_keeps_the_stored_one(
        tmp_path: Path, fake_api: FakeApi, model: FakeApi) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    token_store.save(model.url, "tsk_first", model_name="auth_model", environ=environ)
    finished(fake_api, result(model, auth="token", model_version="2"))
    proc = deploy(tmp_path, fake_api)
    assert proc.returncode == terminal.EXIT_OK, proc.stderr
    assert "auth" not in fake_api.seen[0][2]  # omitted: the model keeps its auth
    assert "inference_token" not in proc.stdout and "stored in" not in proc.stderr
    assert token_store.load(model.url, environ) == "tsk_first"


def test_token_rotate_follows_the_rotation_and_stores_the_new_token(
        tmp_path: Path, fake_api: FakeApi, model: FakeApi) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    token_store.save(model.url, "tsk_first", model_name="auth_model", environ=environ)
    fake_api.routes["POST", "/models/auth_model/token"] = lambda body: json_reply(202,
                                                                                   ACCEPTED)
    finished(fake_api, {"status": "SUCCEEDED", "action": "rotate-token", "deployment_id": ID,
                        "model_name": "auth_model", "serving_name": "auth-model",
                        "inference_url": model.url, "auth": "token",
                        "inference_token": "tsk_second", "message": "new token"})
    proc = run(tmp_path, "token", "rotate", "auth_model", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_OK, proc.stderr
    assert fake_api.seen[0][:2] == ("POST", "/models/auth_model/token")
    assert "tsk_second" in proc.stdout and "try:" not in proc.stdout
    assert token_store.load(model.url, environ) == "tsk_second"
    other = token_store.path(environ).read_text()
    assert "tsk_first" not in other  # replaced, not kept beside it


def test_token_rotate_refused_prints_the_error_document(tmp_path: Path,
                                                        fake_api: FakeApi) -> None:
    refusal = AuthNotEnabled("auth_model's URL is open (auth none)", step="RotateToken")
    fake_api.routes["POST", "/models/open_model/token"] = lambda body: json_reply(
        409, refusal.document().model_dump())
    proc = run(tmp_path, "token", "rotate", "open_model", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_REFUSED
    assert "AuthNotEnabled" in proc.stderr and "--auth token" in proc.stderr
    proc = run(tmp_path, "token", "rotate", "open_model", "--api", fake_api.url,
               "--output", "json")
    assert json.loads(proc.stdout)["error"] == "AuthNotEnabled"


def test_request_prints_the_auth_field(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(SCRIPT)
    proc = run(tmp_path, "request", "train.py", "--model-name", "auth_model", "--auth", "none")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["auth"] == "none"
    proc = run(tmp_path, "request", "train.py", "--model-name", "auth_model", "--auth", "basic")
    assert proc.returncode == terminal.EXIT_USAGE


def test_the_store_is_replaced_whole_and_refuses_garbage(tmp_path: Path) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    token_store.save("http://a:1", "t1", model_name="a", environ=environ)
    token_store.save("http://b:2/", "t2", model_name="b", environ=environ)
    assert token_store.load("http://a:1/", environ) == "t1"
    assert token_store.load("http://b:2", environ) == "t2"
    assert token_store.load("http://c:3", environ) is None
    # the store and its lock file, no temporary file left behind
    assert sorted(p.name for p in (tmp_path / "trainship").iterdir()) == [
        "tokens.json", "tokens.json.lock"]
    token_store.path(environ).write_text("not json")
    with pytest.raises(ValueError, match="not a token store"):
        token_store.load("http://a:1", environ)


def test_concurrent_saves_keep_both_tokens(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Save A reads the store, then save B runs to its end before A writes: without the
    flock around the read-modify-write, A's write drops B's token."""
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    a_has_read, b_done = threading.Event(), threading.Event()
    real_read = token_store._read

    def read(file: Path) -> dict[str, Any]:
        tokens = real_read(file)
        if threading.current_thread().name == "save-a":
            a_has_read.set()
            b_done.wait(timeout=1.0)  # under the lock B cannot finish: A goes on after 1 s
        return tokens

    monkeypatch.setattr(token_store, "_read", read)

    def save_b() -> None:
        a_has_read.wait(timeout=5.0)
        token_store.save("http://b:2", "t2", model_name="b", environ=environ)
        b_done.set()

    threads = [threading.Thread(target=lambda: token_store.save(
                   "http://a:1", "t1", model_name="a", environ=environ), name="save-a"),
               threading.Thread(target=save_b, name="save-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10.0)
    assert token_store.load("http://a:1", environ) == "t1"
    assert token_store.load("http://b:2", environ) == "t2"
    assert stat.S_IMODE(token_store.path(environ).stat().st_mode) == 0o600


def test_save_syncs_the_file_and_its_directory(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    token_store.save("http://a:1", "t1", model_name="a",
                     environ={"XDG_CONFIG_HOME": str(tmp_path)})
    assert synced == ["file", "dir"]
