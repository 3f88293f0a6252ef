from __future__ import annotations

import base64

import pytest

from trainship.errors import InvalidRequest
from trainship.request import (
    MAX_SCRIPT_BYTES,
    check_requirement,
    deployment_id_for,
    effective_timeout,
    normalize,
    parse_request,
)


def test_text_and_base64_scripts_decode_the_same() -> None:
    text = "import mlflow\nprint('hi')\n"
    _, a = parse_request({"model_name": "m", "script": text})
    _, b = parse_request({"model_name": "m", "script_base64": base64.b64encode(
        text.encode()).decode()})
    req, c = parse_request({"model_name": "m", "script_content": base64.b64encode(
        text.encode()).decode(), "timeout": 60})
    assert a == b == c == text
    assert effective_timeout(req) == 60


@pytest.mark.parametrize("body, fragment", [
    ({"model_name": "UPPER", "script": "x"}, "DNS-1123"),
    ({"model_name": "-lead", "script": "x"}, "DNS-1123"),
    ({"model_name": "a" * 64, "script": "x"}, "DNS-1123"),
    ({"model_name": "m"}, "exactly one"),
    ({"model_name": "m", "script": "x", "script_base64": "eA=="}, "exactly one"),
    ({"model_name": "m", "script_base64": "%%%"}, "base64"),
    ({"model_name": "m", "script": "   "}, "empty"),
    ({"model_name": "m", "script": "x", "timeout_seconds": 0}, "timeout_seconds"),
    ({"model_name": "m", "script": "x", "timeout_seconds": 99999}, "timeout_seconds"),
    ({"model_name": "m", "script": "x", "replicas": 0}, "replicas"),
    ({"model_name": "m", "script": "x", "unknown": 1}, "unknown field"),
    ({"model_name": "m", "script": "x", "requirements": "numpy"}, "requirements"),
    ({"model_name": "m", "script": "x", "timeout": 5, "timeout_seconds": 5}, "not both"),
    ({"model_name": "m", "script": "x", "resources": {"cpu": "lots"}}, "quantity"),
    ({"model_name": "m", "script": "x" * (MAX_SCRIPT_BYTES + 1)}, "limit"),
    (["not", "an", "object"], "JSON object"),
])
def test_bad_requests_are_invalid_request(body: object, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(body)
    doc = caught.value.document()
    assert doc.error == "InvalidRequest"
    assert fragment in doc.message + doc.details
    assert doc.help


@pytest.mark.parametrize("req", ["--index-url=http://evil", "-r other.txt",
                                 "pkg @ https://example.invalid/p.whl", "numpy; rm -rf /",
                                 "numpy$(id)", "a|b", "git+https://x/y", ""])
def test_requirements_reject_options_urls_and_shell(req: str) -> None:
    with pytest.raises(ValueError):
        check_requirement(req)


@pytest.mark.parametrize("req", ["numpy", "scikit-learn==1.9.1", "pandas>=2,<4",
                                 "xgboost[scikit-learn]~=2.1"])
def test_requirements_accept_pep508(req: str) -> None:
    assert check_requirement(req) == req


def test_normalize_defaults_and_hash() -> None:
    req, script = parse_request({"model_name": "iris", "script": "print(1)"})
    norm = normalize(req, script, deployment_id="d-1", script_uri="/s/d-1/train.py")
    assert norm.experiment_name == "iris"
    assert norm.timeout_seconds == 1800
    assert norm.resources.cpu == "500m"
    assert len(norm.script_sha256) == 64


def test_idempotency_key_gives_a_stable_id() -> None:
    assert deployment_id_for("k1", "fresh") == deployment_id_for("k1", "other")
    assert deployment_id_for("k1", "x") != deployment_id_for("k2", "x")
    assert deployment_id_for(None, "fresh") == "fresh"


def test_target_must_be_enabled_here() -> None:
    from trainship.errors import TargetNotEnabled

    body = {"model_name": "m", "script": "print(1)", "target": "podman"}
    request, _ = parse_request(body, ("process", "podman"))
    assert request.target == "podman"
    with pytest.raises(TargetNotEnabled) as raised:
        parse_request(body, ("kubernetes",))
    assert raised.value.http_status == 400 and "kubernetes" in raised.value.details
    with pytest.raises(InvalidRequest):  # not a target at all
        parse_request({**body, "target": "docker"}, ("process",))
    assert parse_request({"model_name": "m", "script": "x"}, ("kubernetes",))[0].target is None
