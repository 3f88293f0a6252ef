from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from trainship.client import AWS_EXTRA_HINT, execute_api_region, sigv4_headers

REPO = Path(__file__).resolve().parents[2]


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


def test_without_boto3_the_cli_names_the_aws_extra(tmp_path: Path) -> None:
    """`pip install trainship` has no boto3; `trainship deploy --api <API Gateway URL>`
    must say which extra to install, in one line, without a traceback."""
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    # boto3 and botocore as if not installed: importing them raises ImportError
    code = ("import sys\nsys.modules['boto3'] = None\nsys.modules['botocore'] = None\n"
            "from trainship.cli import main\n"
            "sys.exit(main(['deploy', '--api', "
            "'https://abc123.execute-api.eu-west-1.amazonaws.com/v1', "
            f"'--model-name', 'm', {str(script)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pip install 'trainship[aws]'" in lines[0]
    assert proc.stdout == ""


def test_the_aws_extra_is_the_one_the_message_names() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    names = {Requirement(r).name for r in extras["aws"]}
    assert {"boto3", "botocore"} <= names
    assert "trainship[aws]" in AWS_EXTRA_HINT
    base = {Requirement(r).name for r in tomllib.loads(
        (REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert "boto3" not in base  # the plain install stays without it
