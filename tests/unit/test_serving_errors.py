"""Error answers of /invocations (issue 14), on real MLflow models with signatures.

A refused input is MLflow's 400 document (``error_code`` and ``message`` untouched) plus
``errors``, what is wrong column by column; a model whose predict raises is a 500 naming
the exception's type; no document carries a traceback unless debug is on; a request that
scores is answered byte for byte as MLflow's scoring function answers it, and the
error-structuring code never runs for it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pytest
from mlflow.pyfunc import scoring_server

from trainship.serving import input_errors, protocol

COLUMNS = ["a", "b", "c", "d"]
JSON = "application/json"


class Exploding(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        # no type hints: MLflow would read them as the model's input types
        raise ZeroDivisionError("the model's own bug")


def _requirements() -> list[str]:
    import cloudpickle
    import sklearn

    return [f"scikit-learn=={sklearn.__version__}", f"cloudpickle=={cloudpickle.__version__}"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("errors")
    x = np.random.default_rng(0).normal(size=(40, 4))
    y = (x[:, 0] > 0).astype(int)
    frame = pd.DataFrame(x, columns=COLUMNS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(LogisticRegression().fit(frame, y), str(root / "columns"),
                                  signature=infer_signature(frame, y),
                                  pip_requirements=_requirements())
        mlflow.sklearn.save_model(LogisticRegression().fit(x, y), str(root / "tensor"),
                                  signature=infer_signature(x, y),
                                  pip_requirements=_requirements())
        mlflow.pyfunc.save_model(str(root / "exploding"), python_model=Exploding(),
                                 signature=infer_signature(frame, y),
                                 pip_requirements=_requirements())
    return {name: mlflow.pyfunc.load_model(str(root / name))
            for name in ("columns", "tensor", "exploding")}


def _ask(model: Any, body: Any, content_type: str = JSON,
         debug: bool = False) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, str) else json.dumps(body)
    reply = protocol.invocations(raw.encode(), content_type, model,
                                 model.metadata.get_input_schema(), debug)
    assert reply.content_type == JSON
    return reply.status, json.loads(reply.body)


def _mlflow_document(model: Any, body: Any) -> dict[str, Any]:
    """What MLflow's own scoring function raises for ``body``."""
    with pytest.raises(Exception) as caught:
        scoring_server.invocations(json.dumps(body).encode(), JSON, model,
                                   model.metadata.get_input_schema())
    return dict(json.loads(caught.value.serialize_as_json()))


def _split(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"dataframe_split": {"columns": columns, "data": rows}}


def test_missing_column_is_a_400_naming_it(models: dict[str, Any]) -> None:
    body = _split(COLUMNS[:3], [[1.0, 2.0, 3.0]])
    status, doc = _ask(models["columns"], body)
    assert status == 400
    theirs = _mlflow_document(models["columns"], body)
    assert (doc["error_code"], doc["message"]) == (theirs["error_code"], theirs["message"])
    assert doc["errors"] == [{"column": "d", "expected": "double", "received": None,
                              "problem": "missing"}]


def test_misspelt_column_is_missing_and_unknown(models: dict[str, Any]) -> None:
    status, doc = _ask(models["columns"], _split(["a", "b", "c", "D"], [[1, 2, 3, 4]]))
    assert status == 400
    assert doc["errors"] == [
        {"column": "d", "expected": "double", "received": None, "problem": "missing"},
        {"column": "D", "expected": None, "received": "int64", "problem": "unknown"}]


def test_unknown_column_alone_is_ignored_as_mlflow_does(models: dict[str, Any]) -> None:
    """MLflow scores the signature's columns and drops the others (with a warning)."""
    status, doc = _ask(models["columns"], _split([*COLUMNS, "e"], [[1, 2, 3, 4, 5]]))
    assert status == 200 and "predictions" in doc


def test_wrong_type_names_the_column(models: dict[str, Any]) -> None:
    body = _split(COLUMNS, [["x", 2, 3, 4]])
    status, doc = _ask(models["columns"], body)
    assert status == 400
    theirs = _mlflow_document(models["columns"], body)
    assert (doc["error_code"], doc["message"]) == (theirs["error_code"], theirs["message"])
    assert doc["errors"] == [{"column": "a", "expected": "double", "received": "str",
                              "problem": "type"}]
    status, doc = _ask(models["columns"],
                       {"dataframe_records": [{"a": 1, "b": [2], "c": 3, "d": "x"}]})
    assert status == 400
    assert [(e["column"], e["problem"], e["received"]) for e in doc["errors"]] == \
        [("b", "type", "list"), ("d", "type", "str")]


@pytest.mark.parametrize(("rows", "received"), [([1.0, 2.0, 3.0, 4.0], "(4,)"),
                                                ([[1.0, 2.0, 3.0]], "(1, 3)"),
                                                ([[[1.0, 2.0, 3.0, 4.0]]], "(1, 1, 4)")])
def test_wrong_rank_or_shape_of_a_tensor(models: dict[str, Any], rows: Any,
                                         received: str) -> None:
    status, doc = _ask(models["tensor"], {"inputs": rows})
    assert status == 400 and doc["error_code"] == "INVALID_PARAMETER_VALUE"
    assert doc["errors"] == [{"field": "inputs", "expected": "(any, 4)",
                              "received": received, "problem": "shape"}]


def test_wrong_type_of_a_tensor(models: dict[str, Any]) -> None:
    status, doc = _ask(models["tensor"], {"inputs": [["a", "b", "c", "d"]]})
    assert status == 400 and doc["error_code"] == "BAD_REQUEST"
    assert doc["errors"] == [{"field": "inputs", "expected": "float64", "received": "<U1",
                              "problem": "type"}]


def test_array_sent_to_a_column_signature(models: dict[str, Any]) -> None:
    status, doc = _ask(models["columns"], {"inputs": [[1.0, 2.0, 3.0, 4.0]]})
    assert status == 400
    assert [(e["field"], e["problem"]) for e in doc["errors"]] == [("inputs", "format")]


@pytest.mark.parametrize(("body", "content_type", "received"), [
    ("{nope", JSON, "invalid JSON"),
    ("[1, 2]", JSON, "a JSON list"),
    ('{"rows": [[1, 2, 3, 4]]}', JSON, ["rows"]),
])
def test_malformed_request(models: dict[str, Any], body: str, content_type: str,
                           received: Any) -> None:
    status, doc = _ask(models["columns"], body, content_type)
    assert status == 400 and doc["error_code"] == "BAD_REQUEST"
    [error] = doc["errors"]
    assert (error["field"], error["problem"]) == ("body", "format")
    if isinstance(received, str):
        assert error["received"].startswith(received)
    else:
        assert error["received"] == received


def test_model_exception_is_a_500_with_its_type_and_no_traceback(
        models: dict[str, Any]) -> None:
    body = _split(COLUMNS, [[1.0, 2.0, 3.0, 4.0]])
    assert "stack_trace" in _mlflow_document(models["exploding"], body)  # MLflow leaks it
    status, doc = _ask(models["exploding"], body)
    assert status == 500
    assert doc["error_code"] == "INTERNAL_ERROR"
    assert doc["exception_type"] == "ZeroDivisionError"
    assert "stack_trace" not in doc and "Traceback" not in json.dumps(doc)
    assert "errors" not in doc


def test_debug_adds_the_traceback(models: dict[str, Any]) -> None:
    status, doc = _ask(models["exploding"], _split(COLUMNS, [[1.0, 2.0, 3.0, 4.0]]),
                       debug=True)
    assert status == 500 and doc["exception_type"] == "ZeroDivisionError"
    assert "Traceback" in doc["stack_trace"] and "the model's own bug" in doc["stack_trace"]


def test_csv_parse_failure_has_no_traceback_unless_debug(models: dict[str, Any]) -> None:
    """MLflow puts the traceback of a CSV it cannot parse in the 400's document."""
    body = 'a,b,c,d\n"1,2,3,4\n'
    status, doc = _ask(models["columns"], body, "text/csv")
    assert status == 400 and "stack_trace" not in doc
    status, doc = _ask(models["columns"], body, "text/csv", debug=True)
    assert status == 400 and "Traceback" in doc["stack_trace"]


@pytest.mark.parametrize("name", ["columns", "tensor"])
def test_good_request_is_mlflows_answer_and_skips_the_diagnosis(
        models: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: Any) -> Any:
        raise AssertionError("the success path must not diagnose")

    monkeypatch.setattr(input_errors, "describe", never)
    model = models[name]
    for body in (_split(COLUMNS, [[0.1, -1.2, 0.3, 2.0], [1, 2, 3, 4]]),
                 {"inputs": [[0.1, -1.2, 0.3, 2.0]]} if name == "tensor" else
                 {"dataframe_records": [dict(zip(COLUMNS, [0.1, 0.2, 0.3, 0.4],
                                                 strict=True))]}):
        raw = json.dumps(body)
        theirs = scoring_server.invocations(raw.encode(), JSON, model,
                                            model.metadata.get_input_schema())
        ours = protocol.invocations(raw.encode(), JSON, model,
                                    model.metadata.get_input_schema())
        assert (ours.status, ours.content_type, ours.body) == \
            (theirs.status, theirs.mimetype, theirs.response.encode())


def test_no_signature_gives_an_empty_list(models: dict[str, Any]) -> None:
    model = models["columns"]
    reply = protocol.invocations(json.dumps(_split(COLUMNS[:3], [[1, 2, 3]])).encode(), JSON,
                                 model, None)
    assert json.loads(reply.body)["errors"] == []


def test_serving_debug_setting(tmp_path: Path) -> None:
    from trainship.serving.settings import ServingSettings

    assert ServingSettings.from_env({}).debug is False
    assert ServingSettings.from_env({"TRAINSHIP_SERVING_DEBUG": "1"}).debug is True


def test_model_exception_through_the_batcher(models: dict[str, Any]) -> None:
    """The batcher hands the model's exception back to its caller's thread: still a 500
    with its type."""
    from trainship.serving.batching import Batcher

    model = models["exploding"]

    class Batched:
        metadata = model.metadata

        def __init__(self) -> None:
            self.batcher = Batcher(model.predict, max_rows=16, max_wait_ms=1.0)

        def predict(self, data: Any, params: Any = None) -> Any:
            return self.batcher.predict(data)

    reply = protocol.invocations(json.dumps(_split(COLUMNS, [[1, 2, 3, 4]])).encode(), JSON,
                                 Batched(), model.metadata.get_input_schema())
    doc = json.loads(reply.body)
    assert reply.status == 500 and doc["exception_type"] == "ZeroDivisionError"
    assert "stack_trace" not in doc


def test_parquet_body_is_scored(models: dict[str, Any]) -> None:
    """The body reaches MLflow as bytes, as its own server passes it (a parquet body
    cannot be text)."""
    import io

    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame([[0.1, 0.2, 0.3, 0.4]], columns=COLUMNS).to_parquet(buffer)
    model = models["columns"]
    reply = protocol.invocations(buffer.getvalue(), "application/vnd.apache.parquet", model,
                                 model.metadata.get_input_schema())
    assert reply.status == 200, reply.body


def test_failure_after_predict_is_a_500_with_its_type(models: dict[str, Any]) -> None:
    """Predictions MLflow cannot write as JSON: a 500 naming the exception, the traceback
    only with debug."""
    model = models["columns"]

    class Unwritable:
        metadata = model.metadata

        def predict(self, data: Any, params: Any = None) -> Any:
            return {"x": object()}

    body = json.dumps(_split(COLUMNS, [[1, 2, 3, 4]])).encode()
    for debug in (False, True):
        reply = protocol.invocations(body, JSON, Unwritable(),
                                     model.metadata.get_input_schema(), debug)
        doc = json.loads(reply.body)
        assert reply.status == 500 and doc["error_code"] == "INTERNAL_ERROR"
        assert doc["exception_type"] == "TypeError"
        assert ("stack_trace" in doc) is debug


def test_debug_flag_of_the_command_line() -> None:
    from trainship.serving.cli import parser
    from trainship.serving.settings import ServingSettings

    assert parser(ServingSettings()).parse_args(["--model-dir", "m"]).debug is False
    assert parser(ServingSettings()).parse_args(["--model-dir", "m", "--debug"]).debug is True
    on = ServingSettings(debug=True)
    assert parser(on).parse_args(["--model-dir", "m"]).debug is True
    assert parser(on).parse_args(["--model-dir", "m", "--no-debug"]).debug is False
