"""The CLI with what it reads locally: a script or requirements file that cannot be read,
bad arguments, ``trainship request``, and the exit codes it documents. Each failure is one
line on stderr with its own exit code, never a Python traceback."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.unit.fake_api import SCRIPT, TRAINSHIP, FakeApi, one_line, run
from trainship import terminal
from trainship.request import parse_request

# --- local input ------------------------------------------------------------------

def test_deploy_a_missing_script(tmp_path: Path, fake_api: FakeApi) -> None:
    proc = run(tmp_path, "deploy", "missing.py", "--model-name", "m", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_USAGE == 2
    line = one_line(proc)
    assert "missing.py" in line and "no such file" in line
    assert fake_api.seen == []  # nothing was sent


@pytest.mark.parametrize("command", ["deploy", "request"])
def test_a_requirements_file_that_does_not_exist(tmp_path: Path, script: Path,
                                                 fake_api: FakeApi, command: str) -> None:
    proc = run(tmp_path, command, str(script), "--model-name", "m", "--requirements-file",
               "requirements.txt", *(["--api", fake_api.url] if command == "deploy" else []))
    assert proc.returncode == terminal.EXIT_USAGE
    line = one_line(proc)
    assert "requirements file requirements.txt: no such file" in line
    assert proc.stdout == "" and fake_api.seen == []


def test_a_directory_or_binary_file_as_script(tmp_path: Path, fake_api: FakeApi) -> None:
    proc = run(tmp_path, "deploy", str(tmp_path), "--model-name", "m", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_USAGE
    assert "is a directory" in one_line(proc)
    binary = tmp_path / "model.pkl"
    binary.write_bytes(b"\x80\x04\x95\xff\xfe")
    proc = run(tmp_path, "deploy", str(binary), "--model-name", "m", "--api", fake_api.url)
    assert proc.returncode == terminal.EXIT_USAGE
    assert "not UTF-8 text" in one_line(proc)


def test_bad_arguments_are_usage_errors(tmp_path: Path, script: Path) -> None:
    proc = run(tmp_path, "deploy", str(script))  # --model-name missing
    assert proc.returncode == terminal.EXIT_USAGE
    assert "--model-name" in proc.stderr
    proc = run(tmp_path, "deploy", str(script), "--model-name", "m", "--api", "127.0.0.1:8080")
    assert proc.returncode == terminal.EXIT_USAGE
    assert "not an http:// or https:// URL" in one_line(proc)


# --- trainship request ---------------------------------------------------------------

def test_request_prints_the_original_body(tmp_path: Path) -> None:
    script = tmp_path / "test_train.py"
    script.write_bytes((REPO / "docs" / "examples" / "mlops_deploy_original.py").read_bytes())
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# pinned\nlightgbm==4.6.0  # the booster\n\n")
    proc = run(tmp_path, "request", str(script), "--model-name", "customer-churn",
               "--experiment-name", "production", "--requirements", "xgboost",
               "--requirements-file", str(reqs), "--timeout", "600", "--replicas", "3")
    assert proc.returncode == 0 and proc.stderr == ""
    body = json.loads(proc.stdout)
    assert base64.b64decode(body["script_content"], validate=True) == script.read_bytes()
    assert body == {"model_name": "customer-churn", "script_content": body["script_content"],
                    "requirements": ["xgboost", "lightgbm==4.6.0"],
                    "experiment_name": "production", "timeout": 600, "replicas": 3}
    # the API's own validation accepts it and decodes the same script
    request, text = parse_request(body)
    assert text == script.read_text() and request.timeout == 600


def test_request_with_only_a_model_name(tmp_path: Path, script: Path) -> None:
    proc = run(tmp_path, "request", str(script), "--model-name", "m")
    assert proc.returncode == 0
    body = json.loads(proc.stdout)
    assert set(body) == {"model_name", "script_content", "requirements"}
    assert parse_request(body)[1] == SCRIPT


def test_request_of_a_missing_script(tmp_path: Path) -> None:
    proc = run(tmp_path, "request", "missing.py", "--model-name", "m")
    assert proc.returncode == terminal.EXIT_USAGE
    assert "missing.py: no such file" in one_line(proc)
    assert proc.stdout == ""


# --- docs ----------------------------------------------------------------------------

def test_every_exit_code_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\d+)` \| (.+?) \|$", section, re.M))
    assert {int(code) for code in rows} == set(terminal.EXIT_CODES)
    proc = subprocess.run([str(TRAINSHIP), "--help"], capture_output=True, text=True,
                          timeout=60)
    help_text = " ".join(proc.stdout.split())
    for code, what in terminal.EXIT_CODES.items():
        assert f"{code} {what}" in help_text
