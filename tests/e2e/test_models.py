"""`trainship models [NAME]` on the local stack, as a user runs it (README, docs/api.md): deploy
a model with the CLI, list what serves, deploy its second version at the same URL, and read
the history: v1's serving period closed, v2's open. An unknown name is ModelNotFound."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import QUICK_SCRIPT, ROW, post_json
from trainship import terminal

pytestmark = pytest.mark.e2e

TRAINSHIP = Path(sys.executable).with_name("trainship")


def trainship(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRAINSHIP_API"}
    proc = subprocess.run([str(TRAINSHIP), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=900)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def listed(api: str, name: str, cwd: Path) -> dict[str, Any]:
    proc = trainship("models", "--api", api, "--output", "json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    found = [m for m in json.loads(proc.stdout) if m["model_name"] == name]
    assert len(found) == 1, proc.stdout
    return found[0]


def test_models_lists_what_serves_and_each_versions_history(
        local_stack: dict[str, Any], tmp_path: Path) -> None:
    api = local_stack["api"]
    name = f"test_model_{secrets.token_hex(3)}"  # an underscore: a serving name differs
    (tmp_path / "train.py").write_text(QUICK_SCRIPT)

    first = trainship("deploy", "train.py", "--model-name", name, "--api", api,
                      "--output", "json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    url = json.loads(first.stdout)["inference_url"]
    model = listed(api, name, tmp_path)
    assert model["live_version"] == "1" and model["inference_url"] == url
    assert model["serving_name"] == name.replace("_", "-")
    assert model["target"] == "process" and model["image_uri"] and model["live_since"]
    assert model["deployment_id"] == json.loads(first.stdout)["deployment_id"]
    status, _ = post_json(f"{url}/invocations", ROW)
    assert status == 200  # the URL it lists answers
    table = trainship("models", "--api", api, cwd=tmp_path)
    assert table.returncode == 0 and name in table.stdout and url in table.stdout

    second = trainship("deploy", "train.py", "--model-name", name, "--api", api,
                       "--output", "json", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    model = listed(api, name, tmp_path)
    assert model["live_version"] == "2" and model["inference_url"] == url  # the same URL
    assert model["deployment_id"] == json.loads(second.stdout)["deployment_id"]

    detail = trainship("models", name, "--api", api, "--output", "json", cwd=tmp_path)
    assert detail.returncode == 0, detail.stderr
    record = json.loads(detail.stdout)
    assert record["live_version"] == "2"
    v2, v1 = record["versions"]
    assert (v2["version"], v2["live"], v1["version"], v1["live"]) == ("2", True, "1", False)
    assert len(v1["served"]) == 1 and v1["served"][0]["to"] is not None  # closed
    assert v1["served"][0]["to"] >= v1["served"][0]["from"]
    assert len(v2["served"]) == 1 and v2["served"][0]["to"] is None  # open
    assert v2["served"][0]["from"] == record["live_since"]
    assert v1["image_uri"] and v2["image_uri"] == model["image_uri"] != v1["image_uri"]
    text = trainship("models", name, "--api", api, cwd=tmp_path)
    assert text.returncode == 0 and "live version:   2 since" in text.stdout

    unknown = trainship("models", f"{name}_nope", "--api", api, cwd=tmp_path)
    assert unknown.returncode == terminal.EXIT_REFUSED
    assert "ModelNotFound (HTTP 404)" in unknown.stderr and f"{name}_nope" in unknown.stderr
