"""What a served model says about its own API (issue 14), checked on the flavor matrix's
deployments (tests/e2e/test_flavors.py): ``GET /openapi.json`` is a valid OpenAPI 3.1
document whose columns are those of the registered model's MLflow signature, ``GET /docs``
is an HTML page naming them, and ``trainship predict NAME --example`` prints predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from openapi_spec_validator import validate

TRAINSHIP = Path(sys.executable).with_name("trainship")


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.headers["Content-Type"], response.read()


def _signature_columns(tracking_uri: str, name: str, version: str) -> list[dict[str, Any]]:
    import mlflow
    from mlflow.models import get_model_info

    mlflow.set_tracking_uri(tracking_uri)
    signature = get_model_info(f"models:/{name}/{version}").signature
    assert signature is not None
    return [{"name": spec["name"], "type": spec["type"], "required": spec["required"]}
            for spec in json.loads(signature.to_dict()["inputs"])]


def assert_describes_its_own_api(result: dict[str, Any], local_stack: dict[str, Any],
                                 cwd: Path) -> None:
    """``result``: a deployment's (of an example that logs ``X.head(3)`` as its input
    example)."""
    name, url = result["model_name"], result["inference_url"]
    content_type, body = _get(f"{url}/openapi.json")
    assert content_type == "application/json"
    spec = json.loads(body)
    validate(spec)
    expected = _signature_columns(local_stack["mlflow"], name, result["model_version"])
    assert spec["x-trainship-columns"] == expected
    row = spec["components"]["schemas"]["Row"]
    assert set(row["properties"]) == {c["name"] for c in expected}
    assert spec["info"]["title"] == f"{name} (served by trainship)"
    assert spec["info"]["version"] == result["model_version"]
    assert "example" in spec["paths"]["/invocations"]["post"]["requestBody"]["content"][
        "application/json"]

    content_type, page = _get(f"{url}/docs")
    assert content_type.startswith("text/html")
    for column in expected:
        assert f"<code>{column['name']}</code>".encode() in page

    env = {k: v for k, v in os.environ.items() if k != "TRAINSHIP_API"}
    proc = subprocess.run([str(TRAINSHIP), "predict", name, "--example", "--api",
                           local_stack["api"]], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr
    predictions = json.loads(proc.stdout)["predictions"]
    assert len(predictions) == 3  # the examples log X.head(3)
