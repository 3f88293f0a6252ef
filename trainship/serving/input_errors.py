"""What is wrong with a request MLflow refused: a list of problems, column by column.

Called only on the error path (a 400 from MLflow's parsing or schema enforcement), never
for a request that scored: it parses the body again, without the schema, and compares
what came with the model's input schema. Each problem is a dict:
``{"column" | "field": name, "expected": ..., "received": ..., "problem": kind}`` with
``kind`` one of ``missing``, ``unknown``, ``type``, ``shape``, ``format``. ``column``
names an input of the signature (a column or a named tensor); ``field`` a part of the
request (``body``, or the format key such as ``inputs``).

MLflow ignores inputs the signature does not name (it logs a warning and scores the
rest), so an ``unknown`` column never fails a request by itself; it is listed when the
request failed for another reason, as a hint (a misspelt column shows as one ``missing``
and one ``unknown``).
"""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_MAX_TEXT = 200


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


def _problem(key: str, name: str, problem: str, expected: Any, received: Any) -> dict[str, Any]:
    return {key: name, "expected": expected, "received": received, "problem": problem}


def describe(body: str, content_type: str, schema: Any) -> list[dict[str, Any]]:
    """The problems of ``body`` against ``schema`` (an MLflow ``Schema`` or None)."""
    try:
        data, field = _parse(body, content_type)
    except _FormatError as exc:
        return [exc.entry]
    if schema is None:
        return []
    try:
        if schema.is_tensor_spec():
            return _tensor_problems(data, field, schema)
        return _column_problems(data, field, schema)
    except Exception:  # noqa: BLE001 - a diagnosis must never turn a 400 into a 500
        return []


class _FormatError(Exception):
    def __init__(self, entry: dict[str, Any]) -> None:
        super().__init__(entry["received"])
        self.entry = entry


def _parse(body: str, content_type: str) -> tuple[Any, str]:
    """The request's data as MLflow parses it when it has no schema, and its format key."""
    import pandas as pd
    from mlflow.pyfunc import scoring_server

    if content_type.split(";", 1)[0].strip() == "text/csv":
        try:
            return pd.read_csv(StringIO(body)), "body"
        except Exception as exc:  # noqa: BLE001 - whatever pandas refuses
            raise _FormatError(_problem("field", "body", "format", "CSV with a header row",
                                        _short(exc))) from None
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise _FormatError(_problem("field", "body", "format", "a JSON object",
                                    f"invalid JSON: {exc}")) from None
    if not isinstance(document, dict):
        raise _FormatError(_problem("field", "body", "format", "a JSON object",
                                    f"a JSON {type(document).__name__}"))
    keys = [k for k in FORMATS if k in document]
    if len(keys) != 1:
        raise _FormatError(_problem("field", "body", "format",
                                    f"exactly one of {', '.join(FORMATS)}",
                                    sorted(map(str, document))))
    try:
        data = scoring_server.infer_and_parse_data({keys[0]: document[keys[0]]})
    except Exception as exc:  # noqa: BLE001 - MLflow's own parser refused it
        raise _FormatError(_problem("field", keys[0], "format", f"{keys[0]} as MLflow "
                                    "documents it", _short(exc))) from None
    return data, keys[0]


def _kind(values: Any) -> str:
    """What a column or array holds: its dtype, or the Python types of an object column."""
    import numpy as np
    import pandas as pd

    dtype = getattr(values, "dtype", None)
    if dtype is not None and getattr(dtype, "kind", "O") != "O":
        return str(dtype)
    if isinstance(values, pd.Series):
        values = values.iloc[:1000]
    items = values.ravel()[:1000].tolist() if isinstance(values, np.ndarray) else list(values)
    flat = [i for i in items[:1000] if i is not None]
    return "/".join(sorted({type(i).__name__ for i in flat})) or "null"


def _expected_type(spec: Any) -> str:
    kind = getattr(spec, "type", spec)
    return str(getattr(kind, "name", kind))


def _column_problems(data: Any, field: str, schema: Any) -> list[dict[str, Any]]:
    import numpy as np
    import pandas as pd
    from mlflow.models.utils import _enforce_schema
    from mlflow.types import Schema
    from mlflow.utils.proto_json_utils import cast_df_types_according_to_schema

    if isinstance(data, dict):
        try:
            data = pd.DataFrame(data)
        except ValueError as exc:
            return [_problem("field", field, "format", "columns of equal length", _short(exc))]
    if isinstance(data, np.ndarray | list):
        shape = np.shape(data)
        return [_problem("field", field, "format",
                         f"named columns {', '.join(schema.input_names())}",
                         f"an array of shape {shape}, without column names")]
    if not isinstance(data, pd.DataFrame):
        return []
    present = {str(c) for c in data.columns}
    named = set(schema.input_names())
    problems = []
    for spec in schema.inputs:
        if spec.name not in present:
            if spec.required:
                problems.append(_problem("column", spec.name, "missing",
                                         _expected_type(spec), None))
            continue
        column = data[[spec.name]].copy()
        try:
            one = Schema([spec])
            _enforce_schema(cast_df_types_according_to_schema(column, one), one)
        except Exception:  # noqa: BLE001 - MLflow's conversion or enforcement refused it
            problems.append(_problem("column", spec.name, "type", _expected_type(spec),
                                     _kind(data[spec.name])))
    problems += [_problem("column", str(c), "unknown", None, _kind(data[c]))
                 for c in data.columns if str(c) not in named]
    return problems


def _shape_text(shape: Any) -> str:
    return "(" + ", ".join("any" if d == -1 else str(d) for d in shape) + ")"


def _tensor_problem(name: str, key: str, values: Any, spec: Any) -> list[dict[str, Any]]:
    import numpy as np

    try:
        array = np.asarray(values)
    except ValueError as exc:  # ragged nested lists
        return [_problem(key, name, "shape", _shape_text(spec.shape), _short(exc))]
    expected = tuple(spec.shape)
    if len(array.shape) != len(expected) or any(
            e != -1 and e != r for e, r in zip(expected, array.shape, strict=True)):
        return [_problem(key, name, "shape", _shape_text(expected), str(tuple(array.shape)))]
    try:
        array.astype(spec.type)
    except (ValueError, TypeError):
        return [_problem(key, name, "type", str(spec.type), _kind(array))]
    return []


def _tensor_problems(data: Any, field: str, schema: Any) -> list[dict[str, Any]]:
    import pandas as pd

    if not schema.has_input_names():
        spec = schema.inputs[0]
        values = data.to_numpy() if isinstance(data, pd.DataFrame) else data
        if isinstance(values, dict):
            return [_problem("field", field, "format", "one unnamed tensor",
                             f"named inputs {sorted(map(str, values))}")]
        return _tensor_problem(field, "field", values, spec)
    if isinstance(data, pd.DataFrame):
        data = {str(c): data[c].to_numpy() for c in data.columns}
    if not isinstance(data, dict):
        return [_problem("field", field, "format",
                         f"named inputs {', '.join(schema.input_names())}",
                         "one unnamed tensor")]
    problems = []
    for spec in schema.inputs:
        if spec.name not in data:
            if spec.required:
                problems.append(_problem("column", spec.name, "missing",
                                         f"{spec.type} {_shape_text(spec.shape)}", None))
            continue
        problems += _tensor_problem(spec.name, "column", data[spec.name], spec)
    named = set(schema.input_names())
    problems += [_problem("column", str(k), "unknown", None, _kind(v))
                 for k, v in data.items() if str(k) not in named]
    return problems
