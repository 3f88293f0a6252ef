"""MLflow's scoring protocol: what each request is answered with.

``POST /invocations`` is parsed and answered by MLflow's own scoring function
(``mlflow.pyfunc.scoring_server.invocations``): every input format, status and error
document is the one ``mlflow models serve`` gives. The rest are the fixed answers of the
other routes and the error documents of requests that never reach the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server
from mlflow.version import VERSION

JSON = "application/json"
MAX_BODY_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes


PING = Reply(200, JSON, b"\n")
MLFLOW_VERSION = Reply(200, "text/plain", VERSION.encode())
NOT_FOUND = Reply(404, JSON, b'{"error_code": "NOT_FOUND"}')
BODY_TOO_LARGE = Reply(413, JSON, b'{"error_code": "BAD_REQUEST", "message": "body too large"}')


def metadata(document: dict[str, Any]) -> Reply:
    """``GET /metadata``: what the image recorded about the model (trainship-image.json)."""
    return Reply(200, JSON, json.dumps(document).encode())


def invocations(body: bytes, content_type: str, model: Any, input_schema: Any) -> Reply:
    """Score a request with MLflow's scoring function; errors answer as MLflow's server
    does (status and JSON document from the MlflowException), anything else is a 500 with
    the same kind of document (a bad request must never kill the server)."""
    try:
        result = scoring_server.invocations(body.decode("utf-8", "replace"), content_type,
                                            model, input_schema)
    except MlflowException as exc:
        return Reply(exc.get_http_status_code(), JSON, exc.serialize_as_json().encode())
    except Exception as exc:  # noqa: BLE001 - a bad request must never kill the server
        error = MlflowException(f"{type(exc).__name__}: {exc}")
        return Reply(500, JSON, error.serialize_as_json().encode())
    return Reply(result.status, result.mimetype, result.response.encode())
