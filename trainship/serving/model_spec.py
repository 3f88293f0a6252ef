"""The served model's own API: an OpenAPI 3.1 document built from its MLflow signature and
serving input example (``GET /openapi.json``), and a plain HTML page rendering it
(``GET /docs``, no external assets).

``build_spec`` is pure: the signature's JSON form (``ModelSignature.to_dict()``, what the
MLmodel file holds) and the serving input example in, the document out. The image build
writes it beside trainship-image.json (``write_spec``); the service serves those bytes.

The request formats are those of MLflow's scoring server
(https://mlflow.org/docs/latest/ml/deployment/deploy-model-locally/): JSON with one of
``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs`` (and optional
``params``), or CSV (``text/csv``, a header row then one row per record); the answer is
``{"predictions": ...}``.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

SPEC_FILE = "openapi.json"
JSON = "application/json"
UNTYPED = ("The model was logged without a signature: its inputs are untyped (any JSON "
           "value MLflow's scoring server accepts) and nothing is checked before predict.")

_SCALARS: dict[str, dict[str, Any]] = {
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer", "format": "int32"},
    "long": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "float"},
    "double": {"type": "number", "format": "double"},
    "string": {"type": "string"},
    "binary": {"type": "string", "contentEncoding": "base64"},
    "datetime": {"type": "string", "format": "date-time"},
    "any": {},
}


def _dtype_schema(dtype: str) -> dict[str, Any]:
    """A numpy dtype name (a TensorSpec's) as a JSON Schema."""
    if dtype.startswith(("int", "uint")):
        return {"type": "integer", "format": dtype}
    if dtype.startswith("float"):
        return {"type": "number", "format": dtype}
    if dtype == "bool":
        return {"type": "boolean"}
    return {"type": "string", "format": dtype} if dtype not in ("object", "O") else {}


def type_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """One type of a signature's JSON form (a ColSpec's type, an array's items, an object's
    property, a map's values, a tensor) as a JSON Schema."""
    kind = spec.get("type")
    if kind == "tensor":
        tensor = spec["tensor-spec"]
        out = _dtype_schema(str(tensor["dtype"]))
        for size in reversed(list(tensor.get("shape") or [])):
            out = {"type": "array", "items": out}
            if size is not None and int(size) >= 0:
                out.update(minItems=int(size), maxItems=int(size))
        return {**out, "x-mlflow-tensor": tensor}
    if kind == "array":
        return {"type": "array", "items": type_schema(spec["items"])}
    if kind == "object":
        props = spec.get("properties") or {}
        return {"type": "object",
                "properties": {name: type_schema(p) for name, p in props.items()},
                "required": [name for name, p in props.items() if p.get("required", True)]}
    if kind == "map":
        return {"type": "object", "additionalProperties": type_schema(spec["values"])}
    return dict(_SCALARS.get(str(kind), {"description": f"MLflow type {kind}"}))


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _parse(part: Any) -> list[dict[str, Any]] | None:
    if part is None:
        return None
    return list(json.loads(part) if isinstance(part, str) else part)


def columns(signature: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The input columns: name, JSON Schema, MLflow type, whether required ([] for tensors
    or no signature)."""
    out = []
    for spec in _parse((signature or {}).get("inputs")) or []:
        if spec.get("type") == "tensor":
            return []
        out.append({"name": spec.get("name"), "schema": type_schema(spec),
                    "mlflow_type": spec.get("type"), "required": spec.get("required", True)})
    return out


def _input_schemas(inputs: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Components for the inputs: ``Row`` (a record), ``Inputs`` (what ``inputs`` and
    ``instances`` carry)."""
    if inputs is None:
        return {"Row": {"description": UNTYPED}, "Inputs": {"description": UNTYPED}}
    if inputs and all(spec.get("type") == "tensor" for spec in inputs):
        named = [spec for spec in inputs if spec.get("name")]
        if len(inputs) == 1 and not named:
            tensor = type_schema(inputs[0])
            return {"Row": tensor.get("items", tensor), "Inputs": tensor}
        props = {str(spec["name"]): type_schema(spec) for spec in inputs}
        return {"Row": {"type": "object", "properties": props},
                "Inputs": {"type": "object", "properties": props, "required": list(props)}}
    if not any(spec.get("name") for spec in inputs):  # unnamed columns: positional
        items = [type_schema(spec) for spec in inputs]
        row = {"type": "array", "prefixItems": items, "minItems": len(items)}
        return {"Row": row, "Inputs": {"type": "array", "items": row}}
    props, required = {}, []
    for spec in inputs:
        name = str(spec["name"])
        if spec.get("required", True):
            props[name] = type_schema(spec)
            required.append(name)
        else:
            props[name] = _nullable(type_schema(spec))
    row = {"type": "object", "properties": props, "required": required,
           "description": "One record; a column not in `required` may be missing or null."}
    by_column = {"type": "object", "required": required,
                 "properties": {n: {"type": "array", "items": s} for n, s in props.items()}}
    return {"Row": row, "Inputs": {"oneOf": [{"type": "array", "items": {"$ref": _ref("Row")}},
                                             by_column]}}


def _output_schema(outputs: list[dict[str, Any]] | None) -> dict[str, Any]:
    if outputs is None:
        return {"description": "The model's signature has no outputs: untyped."}
    if len(outputs) == 1 and not outputs[0].get("name"):
        item = type_schema(outputs[0])
        return item if outputs[0].get("type") == "tensor" else {"type": "array", "items": item}
    props = {str(spec.get("name")): type_schema(spec) for spec in outputs}
    return {"type": "array", "items": {"type": "object", "properties": props}}


def _params_schema(params: list[dict[str, Any]] | None) -> dict[str, Any]:
    props = {}
    for spec in params or []:
        schema = type_schema({"type": spec.get("type")})
        if spec.get("shape"):
            schema = {"type": "array", "items": schema}
        props[str(spec["name"])] = {**schema, "default": spec.get("default")}
    return {"type": "object", "properties": props, "additionalProperties": not params,
            "description": "Inference parameters (the signature's ParamSchema)."
            if params else "The model declares no parameters."}


def _ref(name: str) -> str:
    return f"#/components/schemas/{name}"


def _request_schema(names: list[str]) -> dict[str, Any]:
    params = {"$ref": _ref("Params")}
    split = {"type": "object", "required": ["columns", "data"], "properties": {
        "columns": {"type": "array", "items": {"type": "string", "enum": names} if names
                    else {"type": "string"}},
        "data": {"type": "array", "items": {"type": "array"}},
        "index": {"type": "array"}}}
    forms = {"dataframe_split": split,
             "dataframe_records": {"type": "array", "items": {"$ref": _ref("Row")}},
             "inputs": {"$ref": _ref("Inputs")}, "instances": {"$ref": _ref("Inputs")}}
    return {"oneOf": [{"title": key, "type": "object", "required": [key],
                       "properties": {key: schema, "params": params},
                       "additionalProperties": False} for key, schema in forms.items()]}


# The inference token of a model deployed with token auth (trainship.serving.guard); only
# POST /invocations asks for it.
SECURITY_SCHEMES = {
    "bearerToken": {"type": "http", "scheme": "bearer",
                    "description": "The model's inference token (trainship deploy --auth token)"},
    "trainshipToken": {"type": "apiKey", "in": "header", "name": "X-Trainship-Token",
                       "description": "The same token, for clients whose proxy drops "
                                      "Authorization (the Kubernetes API server's pod proxy)"},
}


def _simple(path: str, summary: str, content_type: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "operationId": path.strip("/"), "responses": {
        "200": {"description": "OK", "content": {content_type: {"schema": {"type": "string"}}}}}}}


def build_spec(signature: dict[str, Any] | None, serving_example: dict[str, Any] | None,
               *, title: str = "model", version: str = "", response_example: Any = None,
               ) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a served model from its signature's JSON form
    (``ModelSignature.to_dict()``; None: the model has none) and its serving input example
    (the JSON MLflow saves as serving_input_example.json; None: no example)."""
    inputs = _parse((signature or {}).get("inputs"))
    cols = columns(signature)
    names = [str(c["name"]) for c in cols if c["name"]]
    schemas = {**_input_schemas(inputs),
               "Params": _params_schema(_parse((signature or {}).get("params"))),
               "Predictions": {"type": "object", "required": ["predictions"],
                               "properties": {"predictions": _output_schema(
                                   _parse((signature or {}).get("outputs")))}},
               "Error": {"type": "object", "properties": {"error_code": {"type": "string"},
                                                          "message": {"type": "string"}}}}
    json_media: dict[str, Any] = {"schema": _request_schema(names)}
    if serving_example is not None:
        json_media["example"] = serving_example
    answer: dict[str, Any] = {"schema": {"$ref": _ref("Predictions")}}
    if response_example is not None:
        answer["example"] = response_example
    error = {"content": {JSON: {"schema": {"$ref": _ref("Error")}}}}
    described = ("Score records with the model. Inputs: " + (", ".join(
        f"{c['name']} ({c['mlflow_type']}{'' if c['required'] else ', may be missing'})"
        for c in cols) if cols else ("tensors (see the Inputs schema)" if inputs else UNTYPED)))
    csv = {"schema": {"type": "string", "description": "CSV: a header row"
                      + (f" ({','.join(names)})" if names else "") + ", then one row per record"}}
    invocations = {"post": {
        "summary": "Predict", "operationId": "invocations", "description": described,
        # a token when the model was deployed with token auth (``{}``: none needed else)
        "security": [{}, {"bearerToken": []}, {"trainshipToken": []}],
        "requestBody": {"required": True, "content": {JSON: json_media, "text/csv": csv}},
        "responses": {"200": {"description": "The predictions", "content": {JSON: answer}},
                      "400": {"description": "The input does not match the model", **error},
                      "401": {"description": "No valid inference token (the model was "
                                             "deployed with token auth)", **error},
                      "413": {"description": "The body is over 50 MiB", **error},
                      "500": {"description": "The model failed", **error}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{title} (served by trainship)", "version": version or "0",
                 "description": "MLflow's scoring protocol for this model." if inputs is not None
                 else UNTYPED},
        "paths": {"/invocations": invocations,
                  "/ping": _simple("/ping", "Liveness", JSON),
                  "/health": _simple("/health", "Readiness (the same as /ping)", JSON),
                  "/version": _simple("/version", "The MLflow version serving", "text/plain"),
                  "/metrics": _simple("/metrics", "Prometheus metrics", "text/plain")},
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
        "x-trainship-columns": [{"name": c["name"], "type": c["mlflow_type"],
                                 "required": c["required"]} for c in cols],
    }


def spec_from_model(model_meta: Any, model_dir: Path, *, title: str = "model",
                    version: str = "") -> dict[str, Any]:
    """The document of a model from its MLmodel metadata (``mlflow.models.Model``)."""
    signature = model_meta.signature.to_dict() if model_meta.signature is not None else None
    try:
        text = model_meta.get_serving_input(str(model_dir))
    except (OSError, AttributeError):
        text = None
    example = json.loads(text) if text else None
    return build_spec(signature, example, title=title, version=version)


def write_spec(model_dir: Path, target: Path, *, title: str, version: str) -> None:
    """The image build's step: the spec of the model in ``model_dir`` to ``target``."""
    from mlflow.models import Model

    try:
        model_meta = Model.load(str(model_dir / "MLmodel"))
        spec = spec_from_model(model_meta, model_dir, title=title, version=version)
    except Exception as exc:  # noqa: BLE001 - a model it cannot describe still ships
        spec = _unreadable(exc, title=title, version=version)
    target.write_text(json.dumps(spec, indent=1, sort_keys=True))


def _unreadable(exc: Exception, *, title: str, version: str) -> dict[str, Any]:
    spec = build_spec(None, None, title=title, version=version)
    spec["info"]["description"] += (f" (its signature could not be read: "
                                     f"{type(exc).__name__}: {exc})")
    return spec


def render_docs(spec: dict[str, Any]) -> str:
    """``GET /docs``: the document as one plain HTML page (no script, no external assets)."""
    esc = html.escape
    info = spec.get("info", {})
    post = spec["paths"]["/invocations"]["post"]
    example = post["requestBody"]["content"][JSON].get("example")
    response = post["responses"]["200"]["content"][JSON].get("example")
    rows = "".join(f"<tr><td><code>{esc(str(c['name']))}</code></td><td>{esc(str(c['type']))}"
                   f"</td><td>{'yes' if c['required'] else 'no (may be missing)'}</td></tr>"
                   for c in spec.get("x-trainship-columns", []))
    paths = "".join(f"<li><code>{esc(m.upper())} {esc(p)}</code>: {esc(op.get('summary', ''))}"
                    "</li>" for p, ops in spec["paths"].items() for m, op in ops.items())
    parts = [
        "<!doctype html><html><head><meta charset=\"utf-8\">",
        f"<title>{esc(info.get('title', ''))}</title></head><body>",
        f"<h1>{esc(info.get('title', ''))}</h1><p>{esc(info.get('description', ''))}</p>",
        "<p>The full document: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1).</p>",
        f"<h2>Paths</h2><ul>{paths}</ul>",
        f"<h2>POST /invocations</h2><p>{esc(post.get('description', ''))}</p>",
        "<p>Body: JSON with one of <code>dataframe_split</code>, <code>dataframe_records</code>,"
        " <code>inputs</code>, <code>instances</code> (and optional <code>params</code>), or "
        "CSV (<code>Content-Type: text/csv</code>).</p>",
        (f"<h3>Columns</h3><table border=\"1\"><tr><th>name</th><th>type</th><th>required</th>"
         f"</tr>{rows}</table>" if rows else ""),
        ("<h3>Example request</h3><pre>" + esc(json.dumps(example, indent=2)) + "</pre>"
         if example is not None else "<p>The model has no input example.</p>"),
        ("<h3>Example response</h3><pre>" + esc(json.dumps(response, indent=2)) + "</pre>"
         if response is not None else ""),
        "<h3>Schemas</h3><pre>" + esc(json.dumps(spec["components"]["schemas"], indent=2))
        + "</pre></body></html>",
    ]
    return "".join(parts)


def load_spec(model_meta: Any, model_dir: Path, image_meta: dict[str, Any]) -> dict[str, Any]:
    """The service's start: the document the image build wrote beside the model, else (an
    image from before it) one built from the loaded model's metadata."""
    path = model_dir.parent / SPEC_FILE
    title = str(image_meta.get("model_name") or "model")
    version = str(image_meta.get("model_version") or "")
    try:
        return (json.loads(path.read_text()) if path.exists()
                else spec_from_model(model_meta, model_dir, title=title, version=version))
    except Exception as exc:  # noqa: BLE001 - a model it cannot describe still serves
        return _unreadable(exc, title=title, version=version)


class Pages:
    """The bytes of ``/openapi.json`` and ``/docs``. The example response is the model's
    answer to the example request, scored once (``score``: body -> status, body) when the
    first of them is asked for; after that both are fixed bytes, no per-request cost."""

    def __init__(self, spec: dict[str, Any],
                 score: Callable[[bytes], tuple[int, bytes]] | None = None) -> None:
        self._spec = spec
        self._score = score
        self._lock = threading.Lock()
        self._pages: tuple[bytes, bytes] | None = None

    def _make(self) -> tuple[bytes, bytes]:
        post = self._spec["paths"]["/invocations"]["post"]
        request = post["requestBody"]["content"][JSON].get("example")
        answer = post["responses"]["200"]["content"][JSON]
        if self._score is not None and request is not None and "example" not in answer:
            try:
                status, body = self._score(json.dumps(request).encode())
                if status == 200:
                    answer["example"] = json.loads(body)
            except Exception:  # noqa: BLE001,S110 - the document is served without it
                pass
        return json.dumps(self._spec).encode(), render_docs(self._spec).encode()

    def get(self) -> tuple[bytes, bytes]:
        if self._pages is None:
            with self._lock:
                if self._pages is None:
                    self._pages = self._make()
        return self._pages

    def openapi(self) -> bytes:
        return self.get()[0]

    def docs(self) -> bytes:
        return self.get()[1]
