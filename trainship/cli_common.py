"""What the commands that start an execution share: the API to talk to (the local stack
started if need be) and following the execution to its end."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from trainship import token_store
from trainship.client import ApiError, ApiUnavailable, Client
from trainship.config import CliSettings
from trainship.records import AcceptedJson, RecordJson
from trainship.terminal import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CliError,
    print_json,
    refused,
    report,
    wait_for,
)


def follow_hint(deployment_id: str, api: str | None) -> str:
    return f"trainship status {deployment_id}" + (f" --api {api}" if api else "")


def resolve_api(api: str | None, settings: CliSettings, *, start: bool = True) -> str:
    """--api, else $TRAINSHIP_API, else the local stack (started when not running)."""
    if api:
        return api
    if settings.api:
        return settings.api
    # the local stack's control (with the drivers it stops) only when it is used: a CLI
    # talking to AWS does not load it
    from trainship.local import stack

    home = settings.home
    if not start:
        info = stack.read_info(home)
        if info is None and stack.holder(home) is not None:
            raise ApiUnavailable(f"the local stack is still starting (state directory {home}): "
                                 "try again in a moment, or wait with `trainship local up`")
        if info is None:
            raise ApiUnavailable(f"the local stack is not running (state directory {home}): "
                                 "start it with `trainship local up`, or pass --api URL or "
                                 "set TRAINSHIP_API")
        return str(info["api"])
    try:
        info = stack.up(home)
    except (RuntimeError, TimeoutError, OSError) as exc:
        raise ApiUnavailable(f"could not start the local stack: {exc}") from None
    return str(info["api"])


def follow(client: Client, deployment_id: str, args: argparse.Namespace) -> int:
    """Wait for the deployment to end, with progress in text mode; report it."""
    try:
        record = wait_for(client, deployment_id, progress=args.output != "json")
    except KeyboardInterrupt:
        raise CliError(f"interrupted: deployment {deployment_id} keeps running (stopping the "
                       f"CLI does not stop it); follow it with `"
                       f"{follow_hint(deployment_id, args.api)}`", EXIT_INTERRUPTED) from None
    except (ApiUnavailable, ApiError) as exc:
        reason = (str(exc) if isinstance(exc, ApiUnavailable)
                  else f"HTTP {exc.status} {exc.document.get('error')}")
        raise CliError(f"lost the API while waiting ({reason}); deployment {deployment_id} "
                       f"keeps running: follow it with `"
                       f"{follow_hint(deployment_id, args.api)}`", EXIT_UNAVAILABLE) from None
    store_token(record, args.output)
    return report(record, args.output)


def store_token(record: RecordJson, output: str) -> None:
    """A result that carries the model's new token (a deployment that issued it, a
    rotation): keep it for `trainship predict` (trainship.token_store). It is shown once."""
    result = record.get("result") or {}
    token, url = result.get("inference_token"), result.get("inference_url")
    if record["status"] != "SUCCEEDED" or not token or not url:
        return
    try:
        where = token_store.save(str(url), str(token), model_name=str(result.get("model_name")))
    except (OSError, ValueError) as exc:
        print(f"trainship: could not store the token ({exc}): copy it from the result, it is "
              "not shown again", file=sys.stderr, flush=True)
        return
    if output != "json":
        print(f"trainship: the model's new token (inference_token) is stored in {where} for "
              "`trainship predict`; other clients send it as Authorization: Bearer TOKEN",
              file=sys.stderr, flush=True)


def start_and_follow(client: Client, start: Callable[[], AcceptedJson],
                     args: argparse.Namespace, *, what: str) -> int:
    """Start an execution (a deployment, a rollback, a delete: ``start`` calls the API) and
    follow it to its end, or print its id with ``--no-wait``. A refusal (4xx: nothing was
    changed) prints the error document and exits with its code."""
    try:
        accepted = start()
    except ApiError as exc:
        return refused(exc, args.output)
    except KeyboardInterrupt:
        raise CliError(f"interrupted before the API answered; the {what} may have started: "
                       "`trainship list` shows it", EXIT_INTERRUPTED) from None
    deployment_id = accepted["deployment_id"]
    text = args.output != "json"
    if text:
        print(f"{what} {deployment_id} started", file=sys.stderr, flush=True)
    if args.no_wait:
        print_json(accepted) if not text else print(deployment_id)
        return EXIT_OK
    return follow(client, deployment_id, args)


API_HELP = "API base URL (default: $TRAINSHIP_API or the local stack)"


def add_api_options(parser: argparse.ArgumentParser, *, output: bool = True,
                    no_wait: bool = False) -> None:
    """The options of the commands that talk to the API: --api, --output text|json and, for
    those that start an execution, --no-wait."""
    if no_wait:
        parser.add_argument("--no-wait", action="store_true", help="print the id and return")
    parser.add_argument("--api", help=API_HELP)
    if output:
        parser.add_argument("--output", choices=("text", "json"), default="text")
