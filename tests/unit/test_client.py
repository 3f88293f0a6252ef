from __future__ import annotations

import pytest

from trainship.client import execute_api_region, sigv4_headers


def test_api_gateway_urls_are_signed_in_their_region() -> None:
    assert execute_api_region("https://abc123.execute-api.eu-west-1.amazonaws.com/v1") == \
        "eu-west-1"
    assert execute_api_region("http://127.0.0.1:8080") is None
    assert execute_api_region("https://api.example.com/v1") is None


def test_sigv4_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    headers = sigv4_headers("POST", "https://abc.execute-api.us-east-1.amazonaws.com/v1/x",
                            b"{}", {"Content-Type": "application/json"}, "us-east-1")
    auth = headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/execute-api/aws4_request" in auth
    assert "X-Amz-Date" in headers
