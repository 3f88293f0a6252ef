"""Inference tokens end to end on the local stack (process mode), the way docs/api.md
("Inference tokens") tells a user: `trainship deploy --auth token` of a model whose name has
an underscore, with a requirements line, prints the token once and stores it; the model's
/invocations answers 401 (the error document, WWW-Authenticate) without it and 200 with
`Authorization: Bearer`, and so do /openapi.json, /docs and /metadata (the input
example), while /ping, /health, /version and /metrics stay open; `trainship predict NAME
--example` and `--csv FILE` send the stored token; `trainship token rotate NAME` issues a
new one (the old one is refused at once locally); a second version deployed without
`--auth` keeps the model's token. Two deployments in all."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLES
from trainship.terminal import EXIT_OK, EXIT_REFUSED

pytestmark = pytest.mark.e2e
MODEL = "auth_model"  # serving name auth-model
TRAINSHIP = Path(sys.executable).with_name("trainship")
SCRIPT = EXAMPLES / "sklearn_random_forest.py"  # logs an input example with columns f0..f3
ROWS = {"dataframe_split": {"columns": ["f0", "f1", "f2", "f3"],
                            "data": [[0.1, -1.2, 0.3, 2.0]]}}
TOKEN_LINE = re.compile(r"^inference_token:\s+(tsk_\S+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory, local_stack: dict[str, Any]) -> Path:
    """The user's directory: their requirements file and their config (the token store)."""
    home = tmp_path_factory.mktemp("auth-user")
    (home / "requirements.txt").write_text("scikit-learn\n")
    return home


def trainship(user: Path, local_stack: dict[str, Any], *args: str,
              **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("TRAINSHIP_API", "TRAINSHIP_INFERENCE_TOKEN")}
    environ.update({"XDG_CONFIG_HOME": str(user / "config"), **env})
    proc = subprocess.run([str(TRAINSHIP), *args, "--api", local_stack["api"]],
                          capture_output=True, text=True, env=environ, cwd=user, timeout=1500)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def call(url: str, path: str = "/invocations", token: str | None = None,
         body: Any = ROWS) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if path == "/invocations" else None
    request = urllib.request.Request(f"{url}{path}", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw, status, answer_headers = response.read(), response.status, response.headers
    except urllib.error.HTTPError as exc:
        raw, status, answer_headers = exc.read(), exc.code, exc.headers
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, dict(answer_headers.items()), parsed


@pytest.fixture(scope="module")
def deployed(user: Path, local_stack: dict[str, Any]) -> dict[str, Any]:
    """The first deployment, with token auth, as the user runs it."""
    proc = trainship(user, local_stack, "deploy", str(SCRIPT), "--model-name", MODEL,
                     "--requirements-file", "requirements.txt", "--auth", "token")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    found = TOKEN_LINE.search(proc.stdout)
    assert found, proc.stdout
    url = re.search(r"^inference_url:\s+(\S+)$", proc.stdout, re.MULTILINE)
    assert url, proc.stdout
    assert re.search(r"^auth:\s+token$", proc.stdout, re.MULTILINE), proc.stdout
    assert "tokens.json" in proc.stderr  # where it was stored
    return {"token": found.group(1), "url": url.group(1), "stdout": proc.stdout}


def stored(user: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((user / "config" / "trainship" / "tokens.json")
                                      .read_text())["tokens"]
    return data


def test_the_token_is_printed_once_and_stored_for_the_models_url(
        deployed: dict[str, Any], user: Path) -> None:
    assert deployed["token"].startswith("tsk_") and len(deployed["token"]) > 40
    assert stored(user) == {deployed["url"]: {"model_name": MODEL,
                                              "token": deployed["token"]}}
    assert oct((user / "config" / "trainship" / "tokens.json").stat().st_mode & 0o777) \
        == "0o600"


def test_invocations_and_documents_need_the_token_and_the_probes_do_not(
        deployed: dict[str, Any]) -> None:
    url, token = deployed["url"], deployed["token"]
    status, headers, body = call(url)
    assert status == 401, body
    assert body["error_code"] == "UNAUTHENTICATED" and body["error"] == "Unauthenticated"
    assert body["message"] and body["help"]
    assert headers["WWW-Authenticate"].startswith('Bearer realm="trainship"')
    status, headers, body = call(url, token="tsk_wrong")
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
    status, _, body = call(url, token=token)
    assert status == 200 and len(body["predictions"]) == 1, body
    for probe in ("/ping", "/health", "/version", "/metrics"):
        assert call(url, probe)[0] == 200, probe
    # the model's documents carry its input example: guarded like /invocations
    for document in ("/openapi.json", "/docs", "/metadata"):
        assert call(url, document)[0] == 401, document
        assert call(url, document, token=token)[0] == 200, document


def test_predict_sends_the_stored_token(deployed: dict[str, Any], user: Path,
                                        local_stack: dict[str, Any]) -> None:
    proc = trainship(user, local_stack, "predict", MODEL, "--example")
    assert proc.returncode == EXIT_OK, proc.stderr
    assert len(json.loads(proc.stdout)["predictions"]) == 3  # the logged example's rows
    (user / "rows.csv").write_text("f0,f1,f2,f3\n0.1,-1.2,0.3,2.0\n1.5,0.2,-0.7,0.0\n")
    proc = trainship(user, local_stack, "predict", MODEL, "--csv", "rows.csv")
    assert proc.returncode == EXIT_OK, proc.stderr
    assert len(json.loads(proc.stdout)["predictions"]) == 2
    # without a stored token the model's 401 is printed with what to do
    proc = trainship(user, local_stack, "predict", MODEL, "--example",
                     XDG_CONFIG_HOME=str(user / "elsewhere"))
    assert proc.returncode == 1
    assert "HTTP 401" in proc.stderr and "UNAUTHENTICATED" in proc.stderr
    assert "--token" in proc.stderr


def test_rotate_issues_a_new_token_and_the_old_one_stops(
        deployed: dict[str, Any], user: Path, local_stack: dict[str, Any]) -> None:
    old = deployed["token"]
    proc = trainship(user, local_stack, "token", "rotate", MODEL)
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert "RotateToken" in proc.stderr  # the execution's progress
    found = TOKEN_LINE.search(proc.stdout)
    assert found, proc.stdout
    new = found.group(1)
    assert new != old
    assert call(deployed["url"], token=old)[0] == 401  # at once, locally
    assert call(deployed["url"], token=new)[0] == 200
    assert stored(user)[deployed["url"]]["token"] == new
    proc = trainship(user, local_stack, "predict", MODEL, "--example")
    assert proc.returncode == EXIT_OK, proc.stderr
    deployed["token"] = new
    refused = trainship(user, local_stack, "token", "rotate", "no_such_model")
    assert refused.returncode == EXIT_REFUSED and "ModelNotFound" in refused.stderr


def test_a_second_version_without_auth_keeps_the_models_token(
        deployed: dict[str, Any], user: Path, local_stack: dict[str, Any]) -> None:
    token = deployed["token"]  # the rotated one
    proc = trainship(user, local_stack, "deploy", str(SCRIPT), "--model-name", MODEL,
                     "--requirements-file", "requirements.txt", "--output", "json")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["model_version"] == "2" and result["inference_url"] == deployed["url"]
    assert result["auth"] == "token" and "inference_token" not in result
    assert call(deployed["url"], token=token)[0] == 200  # clients keep working
    assert call(deployed["url"])[0] == 401
    assert stored(user)[deployed["url"]]["token"] == token
