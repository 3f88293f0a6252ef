"""MLflow's scoring protocol: what each request is answered with.

``POST /invocations`` is parsed and answered by MLflow's own scoring function
(``mlflow.pyfunc.scoring_server.invocations``): every input format and every successful
answer is the one ``mlflow models serve`` gives; its error documents gain fields (a
superset of MLflow's keys, see ``invocations``). The rest are the fixed answers of the
other routes and the error documents of requests that never reach the model.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server
from mlflow.version import VERSION

from trainship.serving import input_errors
from trainship.serving.guard import Refusal

JSON = "application/json"
MAX_BODY_BYTES = 50 * 1024 * 1024
# how MLflow's scoring function words an exception raised by the model's predict
MODEL_FAILED = "Encountered an unexpected error while evaluating the model"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()  # besides Content-Type and Content-Length


PING = Reply(200, JSON, b"\n")
MLFLOW_VERSION = Reply(200, "text/plain", VERSION.encode())
NOT_FOUND = Reply(404, JSON, b'{"error_code": "NOT_FOUND"}')
BODY_TOO_LARGE = Reply(413, JSON, b'{"error_code": "BAD_REQUEST", "message": "body too large"}')
# a body the server cannot delimit (RFC 9112 6.3): a Content-Length that is not one decimal
# number, or a transfer coding, which this server does not decode (501: RFC 9112 6.1)
BAD_CONTENT_LENGTH = Reply(400, JSON, b'{"error_code": "BAD_REQUEST", "message": '
                                      b'"Content-Length must be one decimal number"}')
TRANSFER_CODING = Reply(501, JSON, b'{"error_code": "NOT_IMPLEMENTED", "message": '
                                   b'"Transfer-Encoding is not supported: send '
                                   b'Content-Length"}')


# 401 of a guarded route (POST /invocations; GET /openapi.json, /docs, /metadata when the
# model has token auth; trainship.serving.guard): the same answer whether or not the model
# has a token, so it tells nothing about one
_AUTH_HELP = ("Send the model's inference token as 'Authorization: Bearer <token>' or "
              "'X-Trainship-Token: <token>'. The deployment that turned token auth on "
              "printed it once (trainship deploy --auth token; the CLI keeps it for "
              "trainship predict); `trainship token rotate MODEL` issues a new one.")
_AUTH_MESSAGES = {
    Refusal.MISSING: "This request needs the model's inference token; none was sent.",
    Refusal.INVALID: "The token sent is not valid for this model.",
}
# RFC 6750 section 3: a challenge always; error="invalid_token" when a token was sent
_CHALLENGE = 'Bearer realm="trainship"'
# the auth file cannot be read: the server's fault, not the client's (RFC 9110 15.6.4:
# 503, "currently unable to handle the request"); the cause is in the server's log only
_UNAVAILABLE_DOCUMENT = {
    "error_code": "TEMPORARILY_UNAVAILABLE", "error": "AuthUnavailable",
    "message": ("Token auth is not set up on this server (its auth file cannot be read), "
                "so no request can be authenticated."),
    "help": ("The model's auth file (on Kubernetes the Secret <serving name>-auth) is "
             "missing or unreadable; the server's log says why. Deploy the model again "
             "(or `trainship token rotate MODEL`) to write it."),
}


def _refused(refusal: Refusal) -> Reply:
    if refusal is Refusal.UNAVAILABLE:
        return Reply(503, JSON, json.dumps(_UNAVAILABLE_DOCUMENT).encode())
    challenge = _CHALLENGE + (', error="invalid_token"' if refusal is Refusal.INVALID else "")
    document = {"error_code": "UNAUTHENTICATED", "error": "Unauthenticated",
                "message": _AUTH_MESSAGES[refusal], "help": _AUTH_HELP}
    return Reply(401, JSON, json.dumps(document).encode(),
                 headers=(("WWW-Authenticate", challenge),))


# what a guarded route answers a refused request: 401 (no/wrong token), 503 (no auth file)
REFUSED = {refusal: _refused(refusal) for refusal in Refusal}


def metadata(document: dict[str, Any]) -> Reply:
    """``GET /metadata``: what the image recorded about the model (trainship-image.json)."""
    return Reply(200, JSON, json.dumps(document).encode())


def invocations(body: bytes, content_type: str, model: Any, input_schema: Any,
                debug: bool = False) -> Reply:
    """Score a request with MLflow's scoring function. A request that scores is answered
    exactly as MLflow answers it (this path adds nothing). Errors:

    - MLflow refused the input (parsing, schema enforcement: a 400): MLflow's document
      (``error_code``, ``message``, as MLflow gives them) plus ``errors``, what is wrong
      column by column (``input_errors``; worked out on this path only);
    - the model's ``predict`` raised (MLflow answers a 400 with the traceback): a 500 with
      ``exception_type``;
    - anything else: MLflow's document and status, or a 500 (a bad request must never kill
      the server).

    No document carries a traceback (``stack_trace``) unless ``debug``."""
    try:
        # the bytes, as MLflow's server passes them (its messages quote them as such)
        result = scoring_server.invocations(body, content_type, model, input_schema)
    except MlflowException as exc:
        return _mlflow_error(exc, body.decode("utf-8", "replace"), content_type,
                             input_schema, debug)
    except Exception as exc:  # noqa: BLE001 - a bad request must never kill the server
        error = MlflowException(f"{type(exc).__name__}: {exc}")
        return _error_reply(500, error, debug, exception_type=type(exc).__name__,
                            stack_trace=traceback.format_exc())
    return Reply(result.status, result.mimetype, result.response.encode())


def _model_exception(exc: MlflowException) -> BaseException | None:
    """The exception the model's predict raised, when MLflow wrapped one (its scoring
    function turns any non-MLflow exception into a 400 'unexpected error')."""
    cause = exc.__cause__ or exc.__context__
    if cause is None or isinstance(cause, MlflowException):
        return None
    return cause if exc.message.startswith(MODEL_FAILED) else None


def _mlflow_error(exc: MlflowException, body: str, content_type: str, input_schema: Any,
                  debug: bool) -> Reply:
    cause = _model_exception(exc)
    if cause is not None:
        return _error_reply(500, exc, debug, exception_type=type(cause).__name__)
    status = exc.get_http_status_code()
    if status != 400:
        return _error_reply(status, exc, debug)
    return _error_reply(400, exc, debug,
                        errors=input_errors.describe(body, content_type, input_schema))


def _error_reply(status: int, exc: MlflowException, debug: bool, **extra: Any) -> Reply:
    document = json.loads(exc.serialize_as_json())
    trace = document.pop("stack_trace", None) or extra.pop("stack_trace", None)
    extra.pop("stack_trace", None)
    if status == 500 and document.get("error_code") == "BAD_REQUEST":
        document["error_code"] = "INTERNAL_ERROR"  # the model failed, not the request
    document.update(extra)
    if debug and trace:
        document["stack_trace"] = trace
    return Reply(status, JSON, json.dumps(document).encode())
