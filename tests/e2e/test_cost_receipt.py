"""The cost receipt as a user reads it: after a deployment on the local stack (the model the
reliability tests keep serving, the session's ``serving`` fixture: a full run, training and
image build included), `trainship status ID` (text, and --output json) shows what the same
run would cost on AWS (docs/deploy-to-aws.md, "The cost receipt")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trainship.pipeline import BUILD_STEPS, LAMBDA_STEPS

pytestmark = pytest.mark.e2e

TRAINSHIP = Path(sys.executable).with_name("trainship")


def trainship(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRAINSHIP_API"}
    return subprocess.run([str(TRAINSHIP), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=900)


def test_status_shows_the_cost_receipt(local_stack: dict[str, Any], serving: dict[str, Any],
                                       tmp_path: Path) -> None:
    api = local_stack["api"]
    deployment_id = serving["deployment_id"]

    status = trainship("status", deployment_id, "--api", api, "--output", "json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    record = json.loads(status.stdout)
    cost = record["cost"]
    assert cost["final"] and cost["region"] == "us-east-1" and cost["currency"] == "USD"
    # every state entered is a transition; the rollout loop repeats states
    assert cost["state_transitions"] >= len(record["steps"]) > 0
    assert cost["state_transitions_usd"] > 0

    ran = [step["name"] for step in record["steps"]]
    functions = {fn["function"]: fn for fn in cost["lambda_functions"]}
    assert set(functions) == {name for name in ran if name in LAMBDA_STEPS}
    for name, fn in functions.items():
        assert fn["invocations"] == ran.count(name)
        assert fn["memory_mb"] == LAMBDA_STEPS[name].memory_mb
        assert fn["gb_seconds"] > 0 and fn["usd"] > 0

    builds = {build["step"]: build for build in cost["builds"]}
    assert set(builds) == set(BUILD_STEPS) == {"TrainModel", "BuildImage"}
    for build in builds.values():
        assert build["billed_minutes"] >= 1 and build["seconds"] > 0
        assert build["usd"] == pytest.approx(build["billed_minutes"] * 0.01)  # MEDIUM, x86
    assert sum(item["billed_minutes"] for item in cost["build_minutes"]) == sum(
        build["billed_minutes"] for build in builds.values())

    parts = (cost["state_transitions_usd"] + sum(fn["usd"] for fn in functions.values())
             + sum(build["usd"] for build in builds.values()))
    assert cost["total_usd"] > 0
    assert cost["total_usd"] == pytest.approx(parts, abs=1e-9)
    assert not cost["unpriced"]

    text = trainship("status", deployment_id, "--api", api, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert f"cost: ${cost['total_usd']:.6f} at AWS list prices (us-east-1" in text.stdout
    for name in functions:
        assert f"Lambda {name}" in text.stdout
    assert "CodeBuild TrainModel" in text.stdout and "CodeBuild BuildImage" in text.stdout
