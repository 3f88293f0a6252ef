"""``trainship predict NAME (--json FILE | --csv FILE | --example)``: score records with a
live model and print its predictions.

The model's URL comes from the API (GET /models/{NAME}); ``--example`` sends the request
example of the model's own OpenAPI document (GET <url>/openapi.json: its MLflow input
example). The body goes to ``<url>/invocations`` as is (MLflow's scoring protocol); a model
error prints the error body and exits non-zero.

A model deployed with token auth needs its token: ``--token``, else
``$TRAINSHIP_INFERENCE_TOKEN``, else the one `trainship deploy` / `trainship token rotate`
stored for the model's URL (trainship.token_store); it is sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

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


def _http(method: str, url: str, body: bytes | None = None,
          content_type: str = "application/json",
          token: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type} if body else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except OSError as exc:
        raise CliError(f"cannot reach the model at {url}: {exc}", EXIT_UNAVAILABLE) from None


def example_request(url: str) -> bytes:
    """The request example of the model's own OpenAPI document."""
    status, body = _http("GET", f"{url}/openapi.json")
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
    if args.example:
        body, content_type = example_request(url), "application/json"
    elif args.json:
        body, content_type = read_file(args.json, "--json"), "application/json"
    else:
        body, content_type = read_file(args.csv, "--csv"), "text/csv"
    token = inference_token(args.token, url)
    status, answer = _http("POST", f"{url}/invocations", body, content_type, token)
    try:
        document: Any = json.loads(answer)
    except ValueError:
        document = answer.decode("utf-8", "replace")
    if status != 200:
        text = document if isinstance(document, str) else json.dumps(document, indent=2)
        print(f"trainship: the model answered HTTP {status}:\n{text}", file=sys.stderr)
        if status == 401:
            print(f"trainship: {unauthenticated_hint(args.model_name, token)}", file=sys.stderr)
        return EXIT_FAILED
    print_json(document)
    return EXIT_OK


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
                                        f"${TOKEN_ENV}, else the one stored by deploy or "
                                        "token rotate)")
    parser.add_argument("--api", help="API base URL (default: $TRAINSHIP_API or the local "
                                      "stack)")
    parser.set_defaults(func=cmd_predict)
