"""`trainship predict NAME` as a user runs it: the URL from a fake API's GET /models/{NAME},
a fake model answering /openapi.json (a real document from build_spec) and /invocations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fake_api import FakeApi, Reply, json_reply, run
from trainship.cli_predict import plaintext_warning
from trainship.records import ModelDetail, answer
from trainship.serving.model_spec import build_spec

SIGNATURE = {"inputs": '[{"type": "double", "name": "a", "required": true}]',
             "outputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'}
EXAMPLE = {"dataframe_split": {"columns": ["a"], "data": [[1.0], [2.0]]}}


@pytest.fixture
def model() -> Iterator[FakeApi]:
    fake = FakeApi()
    try:
        yield fake
    finally:
        fake.close()


def _live(fake_api: FakeApi, model: FakeApi, **extra: Any) -> None:
    record = {"model_name": "m", "serving_name": "m", "live_version": "2",
              "inference_url": model.url, "image_uri": "bundle:m-v2", "target": "process",
              "live_since": None, "deployment_id": "d-2", "versions": [], **extra}
    fake_api.routes["GET", "/models/m"] = lambda body: json_reply(
        200, answer(ModelDetail.model_validate(record)))


def test_example_sends_the_models_own_input_example(tmp_path: Path, fake_api: FakeApi,
                                                    model: FakeApi) -> None:
    _live(fake_api, model)
    model.routes["GET", "/openapi.json"] = lambda body: json_reply(
        200, build_spec(SIGNATURE, EXAMPLE))
    model.routes["POST", "/invocations"] = lambda body: json_reply(200, {"predictions": [0, 1]})
    proc = run(tmp_path, "predict", "m", "--example", "--api", fake_api.url)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"predictions": [0, 1]}
    assert ("POST", "/invocations", EXAMPLE) in model.seen


def test_json_file_is_sent_as_is_and_a_model_error_exits_non_zero(
        tmp_path: Path, fake_api: FakeApi, model: FakeApi) -> None:
    _live(fake_api, model)
    error = {"error_code": "BAD_REQUEST", "message": "column a is missing"}
    model.routes["POST", "/invocations"] = lambda body: json_reply(400, error)
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"dataframe_records": [{"b": 1}]}))
    proc = run(tmp_path, "predict", "m", "--json", str(request), "--api", fake_api.url)
    assert proc.returncode == 1
    assert "HTTP 400" in proc.stderr and "column a is missing" in proc.stderr
    assert ("POST", "/invocations", {"dataframe_records": [{"b": 1}]}) in model.seen


def test_no_example_or_nothing_serving_is_said_in_one_line(
        tmp_path: Path, fake_api: FakeApi, model: FakeApi) -> None:
    _live(fake_api, model)
    model.routes["GET", "/openapi.json"] = lambda body: json_reply(200, build_spec(None, None))
    proc = run(tmp_path, "predict", "m", "--example", "--api", fake_api.url)
    assert proc.returncode == 2 and "without an input example" in proc.stderr
    _live(fake_api, model, live_version=None, inference_url=None)
    proc = run(tmp_path, "predict", "m", "--example", "--api", fake_api.url)
    assert proc.returncode == 1 and "serves nothing" in proc.stderr
    proc = run(tmp_path, "predict", "nope", "--example", "--api", fake_api.url)
    assert proc.returncode == 3  # the API's 404 document


def _redirect(to: str) -> Reply:
    return 302, "text/plain", b"", {"Location": to}


def test_a_redirect_to_another_host_or_port_gets_no_token(
        tmp_path: Path, fake_api: FakeApi, model: FakeApi) -> None:
    """Two local servers (their ports differ): the model redirects /invocations and
    /openapi.json to the other one, which must never see the token; a redirect on the same
    server keeps it."""
    elsewhere = FakeApi()
    try:
        _live(fake_api, model)
        model.routes["GET", "/openapi.json"] = lambda body: _redirect(
            f"{elsewhere.url}/openapi.json")
        elsewhere.routes["GET", "/openapi.json"] = lambda body: json_reply(
            200, build_spec(SIGNATURE, EXAMPLE))
        model.routes["POST", "/invocations"] = lambda body: _redirect(
            f"{elsewhere.url}/invocations")
        elsewhere.routes["GET", "/invocations"] = lambda body: json_reply(401, {})
        proc = run(tmp_path, "predict", "m", "--example", "--token", "tsk_secret",
                   "--api", fake_api.url)
        assert proc.returncode == 1 and "HTTP 401" in proc.stderr
        assert [h.get("Authorization") for h in model.headers] == ["Bearer tsk_secret"] * 2
        assert [path for _, path, _ in elsewhere.seen] == ["/openapi.json", "/invocations"]
        assert all("Authorization" not in h for h in elsewhere.headers)
        assert "tsk_secret" not in json.dumps(elsewhere.headers)
        assert "plain HTTP" not in proc.stderr  # 127.0.0.1: no warning
        # the same scheme, host and port: the token goes along
        model.routes["POST", "/invocations"] = lambda body: _redirect(
            f"{model.url}/moved")
        model.routes["GET", "/moved"] = lambda body: json_reply(200, {"predictions": [1]})
        proc = run(tmp_path, "predict", "m", "--example", "--token", "tsk_secret",
                   "--api", fake_api.url)
        assert proc.returncode == 0, proc.stderr
        assert model.headers[-1].get("Authorization") == "Bearer tsk_secret"
    finally:
        elsewhere.close()


@pytest.mark.parametrize(("url", "token", "warned"), [
    ("http://a1b2.elb.eu-west-1.amazonaws.com", "tsk_x", True),
    ("http://10.0.0.7:8080", "tsk_x", True),
    ("http://a1b2.elb.eu-west-1.amazonaws.com", None, False),  # no token sent
    ("https://a1b2.elb.eu-west-1.amazonaws.com", "tsk_x", False),
    ("http://127.0.0.1:8080", "tsk_x", False),
    ("http://localhost:8080", "tsk_x", False),
    ("http://[::1]:8080", "tsk_x", False),
])
def test_a_token_over_plain_http_to_another_machine_is_warned_about(
        url: str, token: str | None, warned: bool) -> None:
    warning = plaintext_warning(url, token)
    assert (warning is not None) is warned
    if warning:
        assert "plain HTTP" in warning and "TLS" in warning


def test_example_sends_the_token_to_the_guarded_openapi_document(
        tmp_path: Path, fake_api: FakeApi, model: FakeApi) -> None:
    """A model with token auth guards /openapi.json like /invocations: --example sends the
    token there too, and a 401 there is printed with what to do."""
    _live(fake_api, model)

    def spec(body: Any) -> Reply:
        if model.headers[-1].get("Authorization") != "Bearer tsk_right":
            return 401, "application/json", b'{"error_code": "UNAUTHENTICATED"}'
        return json_reply(200, build_spec(SIGNATURE, EXAMPLE))

    model.routes["GET", "/openapi.json"] = spec
    model.routes["POST", "/invocations"] = lambda body: json_reply(200, {"predictions": [0, 1]})
    proc = run(tmp_path, "predict", "m", "--example", "--token", "tsk_right",
               "--api", fake_api.url)
    assert proc.returncode == 0, proc.stderr
    assert ("POST", "/invocations", EXAMPLE) in model.seen
    proc = run(tmp_path, "predict", "m", "--example", "--api", fake_api.url)
    assert proc.returncode == 1
    assert "HTTP 401" in proc.stderr and "UNAUTHENTICATED" in proc.stderr
    assert "--token" in proc.stderr
    assert model.seen[-1][:2] == ("GET", "/openapi.json")  # nothing was scored
