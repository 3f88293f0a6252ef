"""``trainship predict NAME (--json FILE | --csv FILE | --example)``: score records with a
live model and print its predictions.

The model's URL comes from the API (GET /models/{NAME}); ``--example`` sends the request
example of the model's own OpenAPI document (GET <url>/openapi.json: its MLflow input
example). The body goes to ``<url>/invocations`` as is (MLflow's scoring protocol); a model
error prints the error body and exits non-zero.

A model deployed with token auth needs its token: ``--token``, else
``$TRAINSHIP_INFERENCE_TOKEN``, else the one `trainship deploy` / `trainship token rotate`
stored for the model's URL (trainship.token_store); it is sent as ``Authorization: Bearer``
to /invocations and /openapi.json (guarded when the model has token auth). A redirect to
another scheme, host or port gets no token (urllib copies every header to the redirect's
target otherwise), and a token about to travel over plain http:// to a host other than
this machine gets a warning on stderr (RFC 6750 section 5.3: bearer tokens need TLS; see
"TLS for the inference URL" in docs/deploy-to-aws.md).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Any

from trainship import token_store
from trainship.cli_common import resolve_api
from trainship.cli_request import read_file
from trainship.client import ApiError, Client
from trainship.config import CliSettings
from trainship.terminal import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    print_json,
    refused,
)

TIMEOUT = 60.0


TOKEN_ENV = "TRAINSHIP_INFERENCE_TOKEN"  # noqa: S105 (a variable name, not a secret)


TOKEN_HEADERS = ("Authorization", "X-trainship-token")  # as urllib.request.Request keys them


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class _KeepTokenAtHome(urllib.request.HTTPRedirectHandler):
    """Follows redirects as urllib does, but a redirect to another scheme, host or port
    does not carry the token (urllib's own handler copies every header)."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int,
                         msg: str, headers: Any, newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(new.full_url) != _origin(req.full_url):
            for name in TOKEN_HEADERS:
                new.remove_header(name)
        return new


_OPENER = urllib.request.build_opener(_KeepTokenAtHome)


def plaintext_warning(url: str, token: str | None) -> str | None:
    """The warning for a token about to go over plain HTTP to another machine, else None."""
    parts = urllib.parse.urlsplit(url)
    if not token or parts.scheme != "http":
        return None
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host.lower() == "localhost" or host.lower().endswith(".localhost")
    if loopback:
        return None
    return (f"warning: sending the inference token over plain HTTP to {host}: anyone on "
            "the way can read and replay it (serve the model over HTTPS: 'TLS for the "
            "inference URL' in docs/deploy-to-aws.md)")


def _http(method: str, url: str, body: bytes | None = None,
          content_type: str = "application/json",
          token: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type} if body else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except OSError as exc:
        raise CliError(f"cannot reach the model at {url}: {exc}", EXIT_UNAVAILABLE) from None


def example_request(url: str, status: int, body: bytes) -> bytes:
    """The request example of the model's own OpenAPI document (the answer of GET
    <url>/openapi.json, guarded like /invocations when the model has token auth)."""
    if status != 200:
        raise CliError(f"the model at {url} has no /openapi.json (HTTP {status}): it was built "
                       "before trainship served one; use --json FILE or --csv FILE",
                       EXIT_FAILED)
    spec = json.loads(body)
    media = spec["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]
    if "example" not in media:
        raise CliError("the model was logged without an input example; use --json FILE or "
                       "--csv FILE (log one with input_example=... in log_model)", EXIT_USAGE)
    return json.dumps(media["example"]).encode()


def inference_token(given: str | None, url: str) -> str | None:
    """--token, else $TRAINSHIP_INFERENCE_TOKEN, else the stored token of the URL."""
    if given:
        return given
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    try:
        return token_store.load(url)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the stored tokens: {exc}", EXIT_USAGE) from None


def unauthenticated_hint(model_name: str, token: str | None) -> str:
    if token is None:
        return (f"{model_name} needs its inference token and none is stored for its URL: "
                f"pass --token TOKEN or set {TOKEN_ENV} (the token is in the result of the "
                f"deployment that issued it), or issue a new one with `trainship token "
                f"rotate {model_name}`")
    return (f"the token sent was refused: it may have been rotated (`trainship token rotate "
            f"{model_name}` issues and stores a new one); on EKS a rotated token takes about "
            "a minute to reach the pods")


def cmd_predict(args: argparse.Namespace, settings: CliSettings) -> int:
    client = Client(resolve_api(args.api, settings, start=False))
    try:
        model = client.model(args.model_name)
    except ApiError as exc:
        return refused(exc)
    url = model["inference_url"]
    if model["live_version"] is None or not url:
        raise CliError(f"model {args.model_name} serves nothing (`trainship models "
                       f"{args.model_name}` shows its versions)", EXIT_FAILED)
    url = url.rstrip("/")
    token = inference_token(args.token, url)
    warning = plaintext_warning(url, token)
    if warning:
        print(f"trainship: {warning}", file=sys.stderr)
    if args.example:
        status, answer = _http("GET", f"{url}/openapi.json", token=token)
        if status in (401, 503):  # guarded like /invocations
            return _model_failed(args.model_name, token, status, answer)
        body, content_type = example_request(url, status, answer), "application/json"
    elif args.json:
        body, content_type = read_file(args.json, "--json"), "application/json"
    else:
        body, content_type = read_file(args.csv, "--csv"), "text/csv"
    status, answer = _http("POST", f"{url}/invocations", body, content_type, token)
    if status != 200:
        return _model_failed(args.model_name, token, status, answer)
    try:
        document: Any = json.loads(answer)
    except ValueError:
        document = answer.decode("utf-8", "replace")
    print_json(document)
    return EXIT_OK


def _model_failed(model_name: str, token: str | None, status: int, answer: bytes) -> int:
    """Print the model's error answer (and what to do about a 401)."""
    try:
        text = json.dumps(json.loads(answer), indent=2)
    except ValueError:
        text = answer.decode("utf-8", "replace")
    print(f"trainship: the model answered HTTP {status}:\n{text}", file=sys.stderr)
    if status == 401:
        print(f"trainship: {unauthenticated_hint(model_name, token)}", file=sys.stderr)
    return EXIT_FAILED


def add_parser(sub: Any) -> None:
    """The ``predict`` command on the CLI's subparsers."""
    parser = sub.add_parser("predict", help="score records with a live model (its "
                                            "/invocations) and print the predictions")
    parser.add_argument("model_name", help="the registered model's name (e.g. test_model)")
    body = parser.add_mutually_exclusive_group(required=True)
    body.add_argument("--json", metavar="FILE", help="a JSON request in MLflow's scoring "
                      "format (dataframe_split, dataframe_records, inputs or instances)")
    body.add_argument("--csv", metavar="FILE", help="CSV: a header row, one row per record")
    body.add_argument("--example", action="store_true",
                      help="send the model's own input example (from its /openapi.json)")
    parser.add_argument("--token", help=f"the model's inference token (default: "
                                        f"${TOKEN_ENV}, which is sent to EVERY model "
                                        "predicted against while it is set, else the one "
                                        "stored for the model's URL by deploy or token "
                                        "rotate)")
    parser.add_argument("--api", help="API base URL (default: $TRAINSHIP_API or the local "
                                      "stack)")
    parser.set_defaults(func=cmd_predict)
