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
    ({"model_name": "-lead", "script": "x"}, "not a model name"),
    ({"model_name": "a" * 129, "script": "x"}, "the limit is 128"),
    ({"model_name": "live_demo", "script": "x"}, "trainship's own image tags"),
    ({"model_name": "BuildCache", "script": "x"}, "trainship's own image tags"),
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


# --- names (issue 11): model_name is the MLflow registered-model name as written ---------

GOOD_MODEL_NAMES = ["test_model", "customer_churn", "my_model", "iris-classifier", "Iris.v2",
                    "UPPER", "m", "2024_churn", "a" * 128, "a.b-c_d", "x_"]
BAD_MODEL_NAMES = [
    ("", "empty"), ("test model", "only letters"), ("team/model", "only letters"),
    ("a..b", "'..'"), ("..", "'..'"), (".hidden", "only letters"), ("model.", "only letters"),
    ("_lead", "only letters"), ("a\x00b", "only letters"), ("a\nb", "only letters"),
    ("trailing\n", "only letters"),
    ("tab\there", "only letters"), ("caf\u00e9", "only letters"), ("a" * 129, "limit is 128"),
    ("a:b", "only letters"), ("a@b", "only letters"),
]


@pytest.mark.parametrize("name", GOOD_MODEL_NAMES)
def test_model_names_as_mlflow_users_write_them_are_accepted(name: str) -> None:
    req, _ = parse_request({"model_name": name, "script": "x"})
    assert req.model_name == name  # registered under exactly that name
    norm = normalize(req, "x", deployment_id="d-1", script_uri="/s")
    assert norm.model_name == name and norm.experiment_name == name


@pytest.mark.parametrize("name, fragment", BAD_MODEL_NAMES)
def test_bad_model_names_are_invalid_request_with_an_example(name: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request({"model_name": name, "script": "x"})
    doc = caught.value.document()
    assert doc.error == "InvalidRequest"
    assert "model_name" in doc.details and fragment in doc.details, doc.details
    assert "test_model" in doc.details  # names an example of a good name
    assert '"model_name"' in doc.help


@pytest.mark.parametrize("name", ["a\x00b", "line\nbreak", "cr\r", "tab\tname", "esc\x1b[1m",
                                  "del\x7f", "c1\x85", "", "   ", "e" * 201])
def test_bad_experiment_names_are_invalid_request(name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request({"model_name": "m", "script": "x", "experiment_name": name})
    assert "experiment_name" in caught.value.document().details


@pytest.mark.parametrize("name", ["churn experiments", "team/churn", "Iris (v2) é", "e" * 200])
def test_experiment_names_without_control_characters_are_accepted(name: str) -> None:
    req, _ = parse_request({"model_name": "m", "script": "x", "experiment_name": name})
    assert req.experiment_name == name


def test_normalize_carries_the_serving_name() -> None:
    req, _ = parse_request({"model_name": "test_model", "script": "x"})
    norm = normalize(req, "x", deployment_id="d-1", script_uri="/s")
    assert (norm.model_name, norm.serving_name) == ("test_model", "test-model")


def test_auth_is_token_none_or_omitted_and_travels_in_the_normalised_request() -> None:
    from trainship.request import normalize

    for given in ("token", "none", None):
        body = {"model_name": "auth_model", "script": "print(1)",
                **({"auth": given} if given else {})}
        request, script = parse_request(body)
        assert request.auth == given
        assert normalize(request, script, deployment_id="d-1", script_uri="u").auth == given
    for bad in ("basic", "TOKEN", True, ""):
        with pytest.raises(InvalidRequest) as refused:
            parse_request({"model_name": "m", "script": "x", "auth": bad})
        assert "auth" in refused.value.details


def test_the_stacks_default_auth_comes_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from trainship.config import Settings

    monkeypatch.delenv("TRAINSHIP_DEFAULT_AUTH", raising=False)
    assert Settings.from_env().default_auth == "none"  # the local stack leaves it unset
    monkeypatch.setenv("TRAINSHIP_DEFAULT_AUTH", "Token")
    assert Settings.from_env().default_auth == "token"
    monkeypatch.setenv("TRAINSHIP_DEFAULT_AUTH", "basic")
    with pytest.raises(ValueError, match="TRAINSHIP_DEFAULT_AUTH"):
        Settings.from_env()
