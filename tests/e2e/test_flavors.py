"""The flavor matrix end to end: every example in tests/e2e/flavors.py is sent with its
requirements, deployed on the local stack (three also with target "podman"), and its HTTP
prediction must equal what the model loaded from MLflow as pyfunc predicts on the same input.
The sklearn (process and podman), pyfunc and xgboost cells also describe their own API
(issue 14; tests/e2e/model_spec.py): /openapi.json against the signature, /docs, and
`trainship predict NAME --example`.

The test also measures each cell (environment or image size, cold start) and prints the
rows; docs/training-scripts.md shows them, and test_docs_matrix_matches_the_catalog keeps
that table's static columns equal to the catalog.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.flavors import CATALOG, Flavor, mode, requirements_cell
from tests.e2e.model_spec import assert_describes_its_own_api
from tests.helpers import EXAMPLES, REPO, deploy, post_json
from trainship.client import Client

# part of `make test`; `make test-flavors` runs only this module
pytestmark = pytest.mark.flavors

DOCS = REPO / "docs" / "training-scripts.md"
KEYS = [(f.example, "process") for f in CATALOG] + \
       [(f.example, "podman") for f in CATALOG if f.container]
BY_EXAMPLE = {f.example: f for f in CATALOG}
# the cells whose served API is checked: columns of a plain flavor, a custom pyfunc's, a
# flavor installed from requirements, and the podman image (which carries openapi.json)
SPEC_KEYS = [("sklearn_random_forest.py", "process"), ("pyfunc_custom.py", "process"),
             ("xgboost_classifier.py", "process"), ("sklearn_random_forest.py", "podman")]
# heavy installs first, so the pool's slots fill evenly
HEAVY_FIRST = ("pytorch_mlp.py", "keras_mlp.py", "prophet_forecast.py", "catboost_classifier.py")
INSTALL_LINE = "[trainship] installing requirements into"

# run with the model's own environment: load it from MLflow as pyfunc, predict, print JSON
REFERENCE = r"""
import json, sys
import mlflow, numpy as np, pandas as pd

spec = json.loads(sys.stdin.read())
mlflow.set_tracking_uri(spec["tracking_uri"])
model = mlflow.pyfunc.load_model(spec["uri"])
payload = spec["payload"]
if "dataframe_split" in payload:
    split = payload["dataframe_split"]
    data = pd.DataFrame(split["data"], columns=split["columns"])
    for column in spec["datetime_columns"]:
        data[column] = pd.to_datetime(data[column])
else:
    data = np.asarray(payload["inputs"], dtype=spec["dtype"])
out = model.predict(data)

def plain(value):
    if isinstance(value, pd.DataFrame):
        return [plain(row) for row in value.to_dict(orient="records")]
    if isinstance(value, (pd.Series, np.ndarray)):
        return plain(value.tolist())
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (int, float, bool, str)) or value is None:
        return value
    return str(value)

print("REFERENCE " + json.dumps(plain(out)))
"""


def numbers(value: Any, keys: tuple[str, ...] = ()) -> list[float]:
    """The numeric leaves of a prediction, in order (dict keys sorted; only ``keys`` when
    given): what must agree."""
    if isinstance(value, dict):
        return [n for key in sorted(value) if not keys or key in keys
                for n in numbers(value[key], keys)]
    if isinstance(value, list):
        return [n for item in value for n in numbers(item, keys)]
    if isinstance(value, bool):
        return [float(value)]
    if isinstance(value, (int, float)):
        return [float(value)]
    return []


TRAINING_TIMEOUT = 1500  # seconds: the request's timeout (the training build's)


def key_id(key: tuple[str, str]) -> str:
    return f"{BY_EXAMPLE[key[0]].flavor}-{key[1]}"


def body_for(flavor: Flavor, target: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_name": flavor.model_name + ("-podman" if target == "podman" else ""),
        "script": (EXAMPLES / flavor.example).read_text(),
        "requirements": list(flavor.requirements), "timeout": TRAINING_TIMEOUT}
    if target == "podman":
        body["target"] = "podman"
    return body


@pytest.fixture(scope="module")
def matrix(api: Client) -> dict[tuple[str, str], dict[str, Any]]:
    """Every cell deployed, four at a time (the stack's builds run concurrently)."""
    order = sorted(KEYS, key=lambda k: (k[0] not in HEAVY_FIRST, k[1] != "podman"))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        # a deployment may take as long as its training may run (body_for's timeout) and
        # its image build: the heavy flavors' pip installs run four at a time
        futures = {key: pool.submit(deploy, api, body_for(BY_EXAMPLE[key[0]], key[1]),
                                    TRAINING_TIMEOUT + 600)
                   for key in order}
        records = {key: future.result() for key, future in futures.items()}
    print(f"\nflavor matrix: {len(records)} deployments in {time.monotonic() - started:.0f} s")
    return records


@pytest.fixture(scope="module")
def measured() -> Iterator[dict[str, dict[str, str]]]:
    rows: dict[str, dict[str, str]] = {}
    yield rows
    print("\nmeasured rows for docs/training-scripts.md:")
    for flavor in CATALOG:
        cells = [rows.get(f"{flavor.flavor} ({target})", {})
                 for target in ("process", "podman")]
        size = cells[0].get("size", "?")
        cold = cells[0].get("cold_start", "?")
        if flavor.container:
            size = f"{size if size == '-' else 'env ' + size}; image {cells[1].get('size', '?')}"
            cold = f"process {cold}; podman {cells[1].get('cold_start', '?')}"
        elif size != "-":
            size = f"env {size}"
        print(f"| {flavor.flavor} | [{flavor.example}](examples/{flavor.example}) | "
              f"{requirements_cell(flavor)} | {mode(flavor)} | {size} | {cold} |")


def wait_ping(url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 300) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert proc is None or proc.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url}/ping did not answer within {timeout} s")


def human_size(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.0f} MiB"


def reference_prediction(flavor: Flavor, python: str, tracking_uri: str, version: str,
                         model_name: str) -> Any:
    spec = {"tracking_uri": tracking_uri, "uri": f"models:/{model_name}/{version}",
            "payload": flavor.payload, "dtype": flavor.dtype,
            "datetime_columns": list(flavor.datetime_columns)}
    proc = subprocess.run([python, "-c", REFERENCE], input=json.dumps(spec), text=True,
                          capture_output=True, timeout=600, env={**os.environ, **flavor.env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("REFERENCE ")][-1]
    return json.loads(line.removeprefix("REFERENCE "))


def process_cold_start(python: str, record: Path) -> float:
    """Seconds from starting the inference service (no load cache: imports and the flavor's
    loader included) to its first 200 on /ping."""
    from trainship.bundles import resolve_bundle
    from trainship.procs import free_port, library_path

    handle = json.loads(record.read_text())
    port = free_port()
    proc = subprocess.Popen(
        [python, "-m", "trainship.serving", "--model-dir",
         str(resolve_bundle(handle["image_uri"]) / "model"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "PYTHONPATH": library_path()})
    try:
        return wait_ping(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.terminate()
        proc.wait(30)


def container_cold_start(home: Path, image: str) -> float:
    """Seconds from `podman run` of the image to its first 200 on /ping."""
    from trainship import containers
    from trainship.procs import free_port

    port = free_port()
    name = f"flavor-cold-start-{port}"
    started = time.monotonic()
    containers.podman(home, "run", "-d", "--rm", "--tls-verify=false", "--name", name,
                      "-p", f"127.0.0.1:{port}:8080", image)
    try:
        wait_ping(f"http://127.0.0.1:{port}", None)
        return time.monotonic() - started
    finally:
        containers.podman(home, "rm", "--force", name, check=False)


@pytest.mark.e2e
# the first cell waits for the whole matrix (the module fixture): ~10 min on an idle
# 2-core machine, more when other stacks share it; pytest-timeout's default is 900 s
@pytest.mark.timeout(2700)
@pytest.mark.parametrize("key", KEYS, ids=key_id)
def test_flavor_serves_what_mlflow_loads(
        key: tuple[str, str], matrix: dict[tuple[str, str], dict[str, Any]],
        measured: dict[str, dict[str, str]], local_stack: dict[str, Any],
        local_home: Path) -> None:
    from trainship import containers
    from trainship.envs import env_key, prepare_environment
    from trainship.names import serving_name
    from trainship.registry import serving_input_example

    flavor, target = BY_EXAMPLE[key[0]], key[1]
    record = matrix[key]
    assert record["status"] == "SUCCEEDED", json.dumps(record.get("error"), indent=2)
    steps = {step["name"]: step["status"] for step in record["steps"]}
    assert steps.get("SmokeTestModel") == "SUCCEEDED", steps
    result = record["result"]
    model_name = body_for(flavor, target)["model_name"]
    assert result["model_name"] == model_name
    # the script logged an input example, so SmokeTestModel posted it (and it answers)
    example = serving_input_example(model_name, result["model_version"],
                                    local_stack["mlflow"])
    assert example is not None
    assert post_json(f"{result['inference_url']}/invocations", example)[0] == 200

    status, body = post_json(f"{result['inference_url']}/invocations", flavor.payload)
    assert status == 200, body
    # the model's own requirements environment, as training and process serving use it
    envs = local_home / "envs"
    if flavor.requirements:  # cached by hash: the deployment built it, this finds it
        assert (envs / env_key(list(flavor.requirements)) / ".complete").exists()
    python = prepare_environment(list(flavor.requirements), envs)
    expected = reference_prediction(flavor, python, local_stack["mlflow"],
                                    result["model_version"], model_name)
    got, want = numbers(body["predictions"], flavor.compare), numbers(expected, flavor.compare)
    assert got and len(got) == len(want), (body, expected)
    close = [math.isclose(g, w, rel_tol=1e-5, abs_tol=1e-6)
             for g, w in zip(got, want, strict=True)]
    assert all(close), (body, expected)

    row = measured.setdefault(f"{flavor.flavor} ({target})", {"mode": target})
    if target == "podman":
        image = result["image_uri"]
        reference = image.partition("@")[0]
        # the image carries the flavor's own dependencies (from the model's requirements)
        containers.podman(local_home, "run", "--rm", "--entrypoint", "python3", reference,
                          "-c", f"import {flavor.module}")
        size = json.loads(containers.podman(local_home, "image", "inspect",
                                            reference).stdout)[0]["Size"]
        row["size"] = human_size(int(size))
        row["cold_start"] = f"{container_cold_start(local_home, image):.0f} s"
    else:
        if flavor.requirements:
            du = subprocess.run(["du", "-sb", str(envs / env_key(list(flavor.requirements)))],
                                capture_output=True, text=True, check=True).stdout
            row["size"] = human_size(int(du.split()[0]))
        else:
            row["size"] = "-"
        serving = local_home / "serving" / serving_name(model_name) / \
            f"v{result['model_version']}.json"
        row["cold_start"] = f"{process_cold_start(python, serving):.0f} s"


@pytest.mark.e2e
@pytest.mark.timeout(2700)  # as above: the first test to ask for the matrix waits for it
@pytest.mark.parametrize("key", SPEC_KEYS, ids=key_id)
def test_the_served_model_describes_its_own_api(
        key: tuple[str, str], matrix: dict[tuple[str, str], dict[str, Any]],
        local_stack: dict[str, Any], tmp_path: Path) -> None:
    record = matrix[key]
    assert record["status"] == "SUCCEEDED", json.dumps(record.get("error"), indent=2)
    assert record["result"]["model_name"] == body_for(BY_EXAMPLE[key[0]], key[1])["model_name"]
    assert_describes_its_own_api(record["result"], local_stack, tmp_path)


@pytest.mark.e2e
def test_same_requirements_install_nothing_the_second_time(
        api: Client, matrix: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The two statsmodels cells (process and podman) share one cached environment: exactly
    one of them installed it; a third deployment with the same requirements installs
    nothing."""
    first = [api.logs(matrix[("statsmodels_ols.py", target)]["deployment_id"])
             for target in ("process", "podman")]
    assert sum(INSTALL_LINE in logs for logs in first) == 1
    again = deploy(api, body_for(BY_EXAMPLE["statsmodels_ols.py"], "process"))
    assert again["status"] == "SUCCEEDED", json.dumps(again.get("error"), indent=2)
    logs = api.logs(again["deployment_id"])
    assert "TrainModel build" in logs and INSTALL_LINE not in logs
    assert "is cached: nothing" in logs


def docs_rows() -> list[list[str]]:
    text = DOCS.read_text()
    match = re.search(r"<!-- flavor-matrix:start -->\n(.*?)<!-- flavor-matrix:end -->", text,
                      re.S)
    assert match, f"{DOCS.name} has no flavor-matrix markers"
    lines = [ln for ln in match.group(1).splitlines() if ln.startswith("|")]
    return [[cell.strip() for cell in ln.strip("|").split("|")] for ln in lines[2:]]


def test_docs_matrix_matches_the_catalog() -> None:
    """The table's static columns are the catalog's; the measured ones are filled in."""
    rows = docs_rows()
    assert [row[0] for row in rows] == [f.flavor for f in CATALOG]
    for flavor, row in zip(CATALOG, rows, strict=True):
        assert len(row) == 6, row
        _, example, requirements, modes, size, cold = row
        assert example == f"[{flavor.example}](examples/{flavor.example})", row
        assert requirements == requirements_cell(flavor), row
        assert modes == mode(flavor), row
        assert (EXAMPLES / flavor.example).exists()
        assert size and cold and "?" not in size + cold, row  # measured, not left out
        if flavor.container:  # container cells show the image size next to the env's
            assert "image" in size, row
