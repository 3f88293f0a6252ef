"""Issue 15: the deploy/request command's rollout flags make the request's ``rollout``; bad
values are refused before anything is sent, with the API's own InvalidRequest message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trainship.cli import main
from trainship.client import ApiError
from trainship.errors import InvalidRequest
from trainship.request import parse_request
from trainship.terminal import EXIT_OK, EXIT_REFUSED, EXIT_USAGE


@pytest.fixture
def script(tmp_path: Path) -> str:
    path = tmp_path / "train.py"
    path.write_text("import mlflow\n")
    return str(path)


def body_of(script: str, capsys: pytest.CaptureFixture[str], *flags: str) -> dict[str, Any]:
    """What `trainship request` prints for these flags (the body `deploy` would POST)."""
    code = main(["request", script, "--model-name", "churn", *flags])
    out = capsys.readouterr()
    assert code == EXIT_OK, out.err
    body: dict[str, Any] = json.loads(out.out)
    return body


def refusal(script: str, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    code = main(["request", script, "--model-name", "churn", *flags])
    out = capsys.readouterr()
    assert code == EXIT_USAGE, out
    assert out.out == ""  # nothing printed as a body
    return out.err


def test_no_flag_leaves_the_stack_default(script: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "rollout" not in body_of(script, capsys)


@pytest.mark.parametrize("word", ["canary", "all-at-once"])
def test_the_strategy_alone_is_the_word(word: str, script: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    body = body_of(script, capsys, "--rollout", word)
    assert body["rollout"] == word
    request, _ = parse_request({**body, "script": "x", "script_content": None})
    assert request.rollout is not None and request.rollout.strategy == word


def test_every_knob(script: str, capsys: pytest.CaptureFixture[str]) -> None:
    body = body_of(script, capsys, "--rollout", "canary", "--canary-steps", "5, 25,100",
                   "--canary-interval", "2m", "--max-error-rate", "2%", "--max-p99-ms", "250",
                   "--canary-min-requests", "50", "--canary-no-traffic", "rollback")
    assert body["rollout"] == {"strategy": "canary", "steps": [5, 25, 100],
                               "interval_seconds": 120, "max_error_rate": 0.02,
                               "max_p99_ms": 250.0, "min_requests": 50,
                               "no_traffic": "rollback"}
    # the API takes what the CLI sends, as the CLI sends it
    request, _ = parse_request({**body, "script": "x", "script_content": None})
    assert request.rollout is not None
    assert request.rollout.policy().steps == (5, 25, 100)


def test_a_knob_implies_canary_and_only_what_is_given_is_sent(
        script: str, capsys: pytest.CaptureFixture[str]) -> None:
    body = body_of(script, capsys, "--canary-interval", "90", "--max-error-rate", "0.05")
    assert body["rollout"] == {"strategy": "canary", "interval_seconds": 90,
                               "max_error_rate": 0.05}


@pytest.mark.parametrize(("text", "seconds"), [("120", 120), ("90s", 90), ("2m", 120),
                                               ("1h", 3600), (" 3M ", 180)])
def test_interval_units(text: str, seconds: int, script: str,
                        capsys: pytest.CaptureFixture[str]) -> None:
    body = body_of(script, capsys, "--canary-interval", text)
    assert body["rollout"]["interval_seconds"] == seconds


def test_canary_flags_with_all_at_once_are_a_usage_error(
        script: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = refusal(script, capsys, "--rollout", "all-at-once", "--canary-steps", "10,100",
                  "--max-p99-ms", "300")
    assert "--canary-steps, --max-p99-ms: only for a canary rollout" in err
    assert "all-at-once" in err


def api_details(rollout: dict[str, Any]) -> InvalidRequest:
    """What the API answers for this rollout (POST /deployments)."""
    with pytest.raises(InvalidRequest) as caught:
        parse_request({"model_name": "churn", "script": "x", "rollout": rollout})
    return caught.value


@pytest.mark.parametrize(("flags", "rollout"), [
    (("--canary-steps", "10,5,100"), {"steps": [10, 5, 100]}),            # Policy: order
    (("--canary-steps", "10,50"), {"steps": [10, 50]}),                   # Policy: last 100
    (("--canary-steps", "10,half,100"), {"steps": [10, "half", 100]}),    # pydantic: type
    (("--max-error-rate", "150%"), {"max_error_rate": 1.5}),              # pydantic: le=1
    (("--max-error-rate", "lots"), {"max_error_rate": "lots"}),           # pydantic: type
    (("--max-p99-ms", "9000"), {"max_p99_ms": 9000}),                     # Policy: histogram
    (("--canary-interval", "soon"), {"interval_seconds": "soon"}),        # pydantic: type
    (("--canary-interval", "0"), {"interval_seconds": 0}),                # pydantic: ge=1
    (("--canary-min-requests", "0"), {"min_requests": 0}),                # pydantic: ge=1
])
def test_bad_values_get_the_apis_message(flags: tuple[str, str], rollout: dict[str, Any],
                                         script: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    err = refusal(script, capsys, *flags)
    api = api_details({"strategy": "canary", **rollout})
    assert flags[0] in err
    assert f"InvalidRequest: {api.message}: {api.details}" in err


def test_bad_values_are_refused_before_the_script_is_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refusal(str(tmp_path / "missing.py"), capsys, "--canary-steps", "50")
    assert "last canary step must be 100" in err
    assert "no such file" not in err


def test_deploy_takes_the_flags_too(script: str, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    sent: list[dict[str, Any]] = []

    def submit(self: object, body: dict[str, Any], idempotency_key: str | None = None) -> Any:
        sent.append(body)
        raise ApiError(409, {"error": "DeploymentInProgress", "message": "busy"})

    monkeypatch.setattr("trainship.client.Client.submit", submit)
    code = main(["deploy", script, "--model-name", "churn", "--api", "http://127.0.0.1:9",
                 "--canary-steps", "20,100", "--canary-no-traffic", "rollback"])
    assert code == EXIT_REFUSED
    assert sent[0]["rollout"] == {"strategy": "canary", "steps": [20, 100],
                                  "no_traffic": "rollback"}
    assert sent[0]["script"] == "import mlflow\n"
