"""The served model's own API (issue 14): the OpenAPI 3.1 document built from real MLflow
signatures (validated with openapi-spec-validator), and a real served model answering
``GET /openapi.json`` and ``GET /docs`` (from the file the build writes, and without it)."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from openapi_spec_validator import validate

from tests.helpers import start_serving
from trainship.serving.model_spec import SPEC_FILE, UNTYPED, build_spec, render_docs, write_spec

REPO = Path(__file__).resolve().parents[2]
FRAME = pd.DataFrame({"age": [31, 45], "income": [1.5, None], "city": ["Oslo", "Lyon"],
                      "member": [True, False]})


def _frame_spec() -> dict:
    signature = infer_signature(FRAME, np.array([0.2, 0.7]), params={"threshold": 0.5})
    example = {"dataframe_split": {"columns": list(FRAME.columns),
                                   "data": [[31, 1.5, "Oslo", True]]}}
    return build_spec(signature.to_dict(), example, title="Churn", version="3")


def test_a_column_signature_gives_typed_columns_and_says_which_may_be_missing() -> None:
    spec = _frame_spec()
    validate(spec)
    assert spec["openapi"] == "3.1.0" and spec["info"]["version"] == "3"
    row = spec["components"]["schemas"]["Row"]
    assert row["properties"]["age"] == {"type": "integer", "format": "int64"}
    assert row["properties"]["city"] == {"type": "string"}
    assert row["properties"]["member"] == {"type": "boolean"}
    # income had a None: MLflow marks it optional; it may be missing or null
    assert row["properties"]["income"]["anyOf"][1] == {"type": "null"}
    assert row["required"] == ["age", "city", "member"]
    assert spec["x-trainship-columns"][1] == {"name": "income", "type": "double",
                                              "required": False}
    params = spec["components"]["schemas"]["Params"]["properties"]
    assert params["threshold"]["default"] == 0.5 and params["threshold"]["type"] == "number"
    post = spec["paths"]["/invocations"]["post"]
    forms = {f["title"] for f in post["requestBody"]["content"]["application/json"]["schema"]
             ["oneOf"]}
    assert forms == {"dataframe_split", "dataframe_records", "inputs", "instances"}
    assert "text/csv" in post["requestBody"]["content"]
    assert post["requestBody"]["content"]["application/json"]["example"][
        "dataframe_split"]["columns"] == ["age", "income", "city", "member"]
    predictions = spec["components"]["schemas"]["Predictions"]["properties"]["predictions"]
    assert predictions["type"] == "array" and predictions["items"]["type"] == "number"
    assert set(spec["paths"]) == {"/invocations", "/ping", "/health", "/version", "/metrics"}


def test_a_tensor_signature_gives_arrays_with_dtype_and_shape() -> None:
    signature = infer_signature(np.zeros((2, 4), dtype=np.float32), np.zeros(2, dtype=np.int64))
    spec = build_spec(signature.to_dict(), {"inputs": [[0.0, 0.0, 0.0, 0.0]]})
    validate(spec)
    inputs = spec["components"]["schemas"]["Inputs"]
    assert inputs["type"] == "array" and "minItems" not in inputs  # -1: any number of rows
    assert inputs["items"]["minItems"] == inputs["items"]["maxItems"] == 4
    assert inputs["items"]["items"] == {"type": "number", "format": "float32"}
    assert spec["x-trainship-columns"] == []
    out = spec["components"]["schemas"]["Predictions"]["properties"]["predictions"]
    assert out["items"] == {"type": "integer", "format": "int64"}


def test_no_signature_gives_an_untyped_spec_that_says_so() -> None:
    spec = build_spec(None, None, title="bare")
    validate(spec)
    assert spec["info"]["description"] == UNTYPED
    assert spec["components"]["schemas"]["Inputs"] == {"description": UNTYPED}
    assert UNTYPED in spec["paths"]["/invocations"]["post"]["description"]
    assert "example" not in spec["paths"]["/invocations"]["post"]["requestBody"]["content"][
        "application/json"]
    assert "no input example" in render_docs(spec)


def test_docs_page_is_plain_html_naming_the_columns_and_the_example() -> None:
    page = render_docs(_frame_spec())
    assert page.startswith("<!doctype html>")
    for text in ("age", "income", "may be missing", "dataframe_split", "/openapi.json"):
        assert text in page
    assert "<script" not in page and "http://" not in page and "https://" not in page


# --- a real served model ------------------------------------------------------------------

def _save_model(path: Path) -> Path:
    import cloudpickle
    import mlflow.sklearn
    import sklearn
    from sklearn.linear_model import LogisticRegression

    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    mlflow.sklearn.save_model(LogisticRegression().fit(x, [0, 0, 1, 1]), str(path),
                              serialization_format="cloudpickle", input_example=x.head(2),
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}",
                                                f"cloudpickle=={cloudpickle.__version__}"])
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    _save_model(root / "model")
    return root


def _serve(model_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    return start_serving(model_dir)


@pytest.fixture
def served(bundle: Path) -> Iterator[str]:
    proc, url = _serve(bundle / "model")
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers["Content-Type"], response.read()


def _post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _check_served(url: str) -> dict:
    content_type, body = _get(f"{url}/openapi.json")
    assert content_type == "application/json"
    spec = json.loads(body)
    validate(spec)
    assert spec["x-trainship-columns"] == [{"name": "a", "type": "double", "required": True},
                                           {"name": "b", "type": "double", "required": True}]
    example = spec["paths"]["/invocations"]["post"]["requestBody"]["content"][
        "application/json"]["example"]
    answer = _post(f"{url}/invocations", json.dumps(example).encode())
    assert len(answer["predictions"]) == 2
    # the example response is the model's answer to the example request
    assert spec["paths"]["/invocations"]["post"]["responses"]["200"]["content"][
        "application/json"]["example"] == answer
    content_type, page = _get(f"{url}/docs")
    assert content_type.startswith("text/html") and b"<code>a</code>" in page
    assert b"Example response" in page
    return spec


def test_an_image_without_openapi_json_builds_it_at_start(served: str, bundle: Path) -> None:
    assert not (bundle / SPEC_FILE).exists()
    assert _check_served(served)["info"]["title"].startswith("model")


def test_the_service_serves_the_file_the_build_wrote(bundle: Path) -> None:
    write_spec(bundle / "model", bundle / SPEC_FILE, title="Written.at.build", version="7")
    try:
        proc, url = _serve(bundle / "model")
        try:
            spec = _check_served(url)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    finally:
        (bundle / SPEC_FILE).unlink()
    assert spec["info"]["title"] == "Written.at.build (served by trainship)"
    assert spec["info"]["version"] == "7"


def test_a_signature_that_cannot_be_read_still_gives_a_valid_untyped_spec(
        tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "MLmodel").write_text("signature:\n  inputs: '[{\"type\": \"no\"'\n")
    write_spec(tmp_path / "model", tmp_path / SPEC_FILE, title="broken", version="1")
    spec = json.loads((tmp_path / SPEC_FILE).read_text())
    validate(spec)
    assert spec["info"]["description"].startswith(UNTYPED)
    assert "could not be read" in spec["info"]["description"]


def test_invocations_declare_the_optional_token() -> None:
    spec = _frame_spec()
    validate(spec)
    post = spec["paths"]["/invocations"]["post"]
    # {} first: a model deployed without token auth needs none
    assert post["security"] == [{}, {"bearerToken": []}, {"trainshipToken": []}]
    assert "401" in post["responses"]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http",
                                      "scheme": "bearer"}
    assert schemes["trainshipToken"]["name"] == "X-Trainship-Token"
    assert all("security" not in spec["paths"][path]["get"]
               for path in ("/ping", "/health", "/version", "/metrics"))
