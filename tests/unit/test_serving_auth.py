"""Token auth of the inference service (issue 14): the guard's cache and a real forked
server over real HTTP, its auth file replaced under it as the drivers replace it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import save_logistic_model, start_serving
from trainship import auth
from trainship.cluster import local_auth
from trainship.serving import guard as guard_module
from trainship.serving.cli import parser
from trainship.serving.guard import Guard, Refusal, bearer
from trainship.serving.settings import ServingSettings

ROW = b'{"inputs": [[0.1, -1.2, 0.3, 2.0]]}'
MODEL = "Iris.v2"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _guard(path: Path, clock: Clock, wall: float = 5000.0) -> Guard:
    return Guard(path, clock=clock, now=lambda: wall)


# --- the guard ------------------------------------------------------------------------

def test_bearer_takes_the_token_of_a_bearer_header_only() -> None:
    assert bearer("Bearer tsk_a") == "tsk_a"
    assert bearer("bearer  tsk_a ") == "tsk_a"
    assert bearer("Basic dXNlcjpwdw==") is None
    assert bearer("Bearer") is None
    assert bearer("") is None
    assert bearer(None) is None


def test_the_guard_checks_tokens_from_either_header(tmp_path: Path) -> None:
    path = tmp_path / "auth"
    path.write_text(auth.render(auth.with_token(auth.AuthFile(), auth.digest("tsk_a"),
                                                pending=False)))
    guard = _guard(path, Clock())
    assert guard.check("Bearer tsk_a", None) is None
    assert guard.check(None, "tsk_a") is None
    assert guard.check("Bearer tsk_wrong", "tsk_a") is None  # one valid token is enough
    assert guard.check(None, None) is Refusal.MISSING
    assert guard.check("Basic eA==", None) is Refusal.MISSING
    assert guard.check("Bearer tsk_b", None) is Refusal.INVALID
    assert guard.check(None, "tsk_b") is Refusal.INVALID


def test_an_open_file_lets_anyone_in(tmp_path: Path) -> None:
    path = tmp_path / "auth"
    path.write_text("none\n")
    assert _guard(path, Clock()).check(None, None) is None


def test_smoke_tokens_expire_by_the_wall_clock(tmp_path: Path) -> None:
    path = tmp_path / "auth"
    smoke = auth.with_smoke(auth.AuthFile(), auth.digest("tsk_s"), 6000.0, now=0.0)
    path.write_text(auth.render(smoke))
    assert _guard(path, Clock(), wall=5999.0).check(None, "tsk_s") is None
    assert _guard(path, Clock(), wall=6000.0).check(None, "tsk_s") is Refusal.INVALID


def test_a_missing_or_broken_file_fails_closed_and_recovers(tmp_path: Path) -> None:
    path, clock = tmp_path / "auth", Clock()
    guard = _guard(path, clock)
    assert guard.check("Bearer tsk_a", None) is Refusal.UNAVAILABLE
    assert "FileNotFoundError" in guard.problem
    path.write_text("this is not an auth file\n")
    clock.now += guard_module.CHECK_SECONDS
    assert guard.check(None, None) is Refusal.UNAVAILABLE
    assert "ValueError" in guard.problem
    path.write_text("none\n")
    clock.now += guard_module.CHECK_SECONDS
    assert guard.check(None, None) is None
    assert guard.problem == ""


def test_the_file_is_looked_at_at_most_every_half_second_and_read_when_it_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, clock = tmp_path, Clock()
    path = local_auth.write(home, MODEL, "none\n")
    parsed: list[str] = []
    real_parse = guard_module.parse

    def counting_parse(text: str) -> Any:
        parsed.append(text)
        return real_parse(text)

    monkeypatch.setattr(guard_module, "parse", counting_parse)
    guard = _guard(path, clock)
    for _ in range(100):
        assert guard.check(None, None) is None
    clock.now += 10
    assert guard.check(None, None) is None
    assert len(parsed) == 1  # unchanged: one stat, no read
    local_auth.write(home, MODEL, auth.render(auth.with_token(
        auth.AuthFile(), auth.digest("tsk_a"), pending=True)))
    clock.now += guard_module.CHECK_SECONDS / 2
    assert guard.check(None, None) is None  # not looked at yet
    clock.now += guard_module.CHECK_SECONDS / 2
    assert guard.check(None, None) is Refusal.MISSING  # replaced by a rename: a new inode
    assert guard.check("Bearer tsk_a", None) is None
    assert len(parsed) == 2


def test_the_auth_file_setting_and_flag() -> None:
    assert ServingSettings.from_env({}).auth_file is None
    assert ServingSettings.from_env({"TRAINSHIP_SERVING_AUTH_FILE": " "}).auth_file is None
    settings = ServingSettings.from_env({"TRAINSHIP_SERVING_AUTH_FILE": "/var/run/a/auth"})
    assert settings.auth_file == Path("/var/run/a/auth")
    args = parser(settings).parse_args(["--model-dir", "m"])
    assert args.auth_file == Path("/var/run/a/auth")
    args = parser(settings).parse_args(["--model-dir", "m", "--auth-file", "/x"])
    assert args.auth_file == Path("/x")
    assert parser(ServingSettings()).parse_args(["--model-dir", "m"]).auth_file is None


# --- a real server ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def server(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model_dir = save_logistic_model(tmp_path_factory.mktemp("auth") / "model")
    path = local_auth.write(home, MODEL, _token_file("tsk_first"))
    proc, url = start_serving(model_dir, workers=2, tmpdir=tmp_path_factory.mktemp("tmp"),
                              TRAINSHIP_SERVING_AUTH_FILE=str(path))
    try:
        yield url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def _token_file(token: str) -> str:
    return auth.render(auth.with_token(auth.AuthFile(), auth.digest(token), pending=False))


def _call(url: str, path: str = "/invocations", *, method: str = "POST",
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        f"{url}{path}", data=ROW if method == "POST" else None, method=method,
        headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _eventually(url: str, headers: dict[str, str], status: int) -> None:
    """Every worker answers ``status`` (the file is looked at every 0.5 s): asked until a
    deadline far above that, never slept on as an assertion."""
    deadline = time.monotonic() + 20
    streak = 0
    while time.monotonic() < deadline:
        streak = streak + 1 if _call(url, headers=headers)[0] == status else 0
        if streak >= 10:  # both workers, whichever the kernel picks
            return
        time.sleep(0.05)
    raise AssertionError(f"still not {status} for {headers}")


PROBES = ("/ping", "/health", "/version", "/metrics")
DOCUMENTS = ("/openapi.json", "/docs", "/metadata")  # the input example: guarded


def test_probes_stay_open_and_documents_need_the_token(server: str) -> None:
    for path in PROBES:
        assert _call(server, path, method="GET")[0] == 200, path
    for path in DOCUMENTS:
        status, headers, body = _call(server, path, method="GET")
        assert status == 401, path
        assert headers["WWW-Authenticate"] == 'Bearer realm="trainship"'
        assert b"dataframe" not in body and b"inputs" not in body  # no example leaks
        status, headers, _ = _call(server, path, method="GET",
                                   headers={"Authorization": "Bearer tsk_wrong"})
        assert status == 401 and "invalid_token" in headers["WWW-Authenticate"], path
        for token in ({"Authorization": "Bearer tsk_first"},
                      {"X-Trainship-Token": "tsk_first"}):
            assert _call(server, path, method="GET", headers=token)[0] == 200, path


def test_no_token_is_a_401_error_document_with_a_bearer_challenge(server: str) -> None:
    status, headers, body = _call(server)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="trainship"'
    assert headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert document["error_code"] == "UNAUTHENTICATED"
    assert document["error"] == "Unauthenticated"
    assert document["message"] and "Bearer" in document["help"]


def test_a_wrong_token_is_invalid_token(server: str) -> None:
    status, headers, body = _call(server, headers={"Authorization": "Bearer tsk_wrong"})
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="trainship", error="invalid_token"'
    assert "tsk_" not in body.decode()  # never echoes a token, never names the right one


def test_the_token_in_either_header_is_scored(server: str) -> None:
    for headers in ({"Authorization": "Bearer tsk_first"}, {"X-Trainship-Token": "tsk_first"}):
        status, _, body = _call(server, headers=headers)
        assert status == 200, body
        assert len(json.loads(body)["predictions"]) == 1


def test_a_refused_upload_leaves_the_server_answering(server: str) -> None:
    for _ in range(5):
        assert _call(server)[0] == 401
        assert _call(server, headers={"X-Trainship-Token": "tsk_first"})[0] == 200


def test_a_rotation_takes_effect_without_a_restart_and_a_lost_file_is_a_503(
        server: str, home: Path) -> None:
    try:
        local_auth.write(home, MODEL, _token_file("tsk_second"))
        _eventually(server, {"Authorization": "Bearer tsk_first"}, 401)
        _eventually(server, {"Authorization": "Bearer tsk_second"}, 200)
        local_auth.remove(home, MODEL)
        # the server's fault, not the client's: 503; /health and /ping stay 200 (the
        # kubelet's liveness probe must not restart the pods over it)
        _eventually(server, {"Authorization": "Bearer tsk_second"}, 503)
        status, headers, body = _call(server, headers={"Authorization": "Bearer tsk_second"})
        document = json.loads(body)
        assert status == 503 and "not set up" in document["message"]
        assert document["error"] == "AuthUnavailable" and "WWW-Authenticate" not in headers
        for path in DOCUMENTS:
            status, _, body = _call(server, path, method="GET",
                                    headers={"Authorization": "Bearer tsk_second"})
            assert status == 503 and json.loads(body)["error"] == "AuthUnavailable", path
        assert _call(server, "/ping", method="GET")[0] == 200
        assert _call(server, "/health", method="GET")[0] == 200
        # an open URL: everything open, no token needed
        local_auth.write(home, MODEL, "none\n")
        _eventually(server, {}, 200)
        for path in (*PROBES, *DOCUMENTS):
            assert _call(server, path, method="GET")[0] == 200, path
    finally:
        local_auth.write(home, MODEL, _token_file("tsk_first"))
        _eventually(server, {"Authorization": "Bearer tsk_first"}, 200)


def test_an_unreadable_file_is_a_503(tmp_path: Path) -> None:
    """A path that exists but cannot be read as a file (a directory: unreadable even to
    root, unlike a mode-000 file), from the start; then the file appears."""
    model_dir = save_logistic_model(tmp_path / "model")
    path = tmp_path / "auth"
    path.mkdir()
    proc, url = start_serving(model_dir, tmpdir=tmp_path, TRAINSHIP_SERVING_AUTH_FILE=str(path))
    try:
        assert _call(url, headers={"Authorization": "Bearer tsk_first"})[0] == 503
        assert _call(url, "/health", method="GET")[0] == 200  # liveness: no restart loop
        assert _call(url, "/openapi.json", method="GET")[0] == 503
        assert _call(url, "/ping", method="GET")[0] == 200
        path.rmdir()
        path.write_text(_token_file("tsk_first"))
        _eventually(url, {"Authorization": "Bearer tsk_first"}, 200)
        assert _call(url, "/health", method="GET")[0] == 200
    finally:
        _stop(proc)
