"""``trainship predict NAME (--json FILE | --csv FILE | --example)``: score records with a
live model and print its predictions.

The model's URL comes from the API (GET /models/{NAME}); ``--example`` sends the request
example of the model's own OpenAPI document (GET <url>/openapi.json: its MLflow input
example). The body goes to ``<url>/invocations`` as is (MLflow's scoring protocol); a model
error prints the error body and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

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


def _http(method: str, url: str, body: bytes | None = None,
          content_type: str = "application/json") -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": content_type} if body else {})
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
    status, answer = _http("POST", f"{url}/invocations", body, content_type)
    try:
        document: Any = json.loads(answer)
    except ValueError:
        document = answer.decode("utf-8", "replace")
    if status != 200:
        text = document if isinstance(document, str) else json.dumps(document, indent=2)
        print(f"trainship: the model answered HTTP {status}:\n{text}", file=sys.stderr)
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
    parser.add_argument("--api", help="API base URL (default: $TRAINSHIP_API or the local "
                                      "stack)")
    parser.set_defaults(func=cmd_predict)
