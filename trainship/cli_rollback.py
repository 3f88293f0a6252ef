"""``trainship rollback NAME --to N``: serve an earlier registered version again.

POST /models/{NAME}/rollback; the API refuses what cannot be rolled back (an error
document, nothing changed) and starts the rollback's execution, which this command follows
like ``trainship deploy`` (``--no-wait``: print its id and return).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from trainship.cli_common import follow, resolve_api
from trainship.client import ApiError, Client
from trainship.config import CliSettings
from trainship.terminal import EXIT_INTERRUPTED, EXIT_OK, CliError, print_json, refused


def cmd_rollback(args: argparse.Namespace, settings: CliSettings) -> int:
    client = Client(resolve_api(args.api, settings))
    try:
        accepted = client.rollback(args.model_name, args.to)
    except ApiError as exc:
        return refused(exc, args.output)
    except KeyboardInterrupt:
        raise CliError("interrupted before the API answered; the rollback may have started: "
                       "`trainship list` shows it", EXIT_INTERRUPTED) from None
    deployment_id = accepted["deployment_id"]
    text = args.output != "json"
    if text:
        print(f"rollback of {args.model_name} to version {args.to}: deployment "
              f"{deployment_id} started", file=sys.stderr, flush=True)
    if args.no_wait:
        print_json(accepted) if not text else print(deployment_id)
        return EXIT_OK
    return follow(client, deployment_id, args)


def add_parser(sub: Any) -> None:
    """The ``rollback`` command on the CLI's subparsers."""
    parser = sub.add_parser(
        "rollback", help="serve an earlier version of a model again from its image (no "
                         "training, no build; same URL, same rollout checks and smoke test)")
    parser.add_argument("model_name", help="the registered model's name (e.g. test_model)")
    parser.add_argument("--to", required=True, metavar="N",
                        help="the version to serve again (one that served before)")
    parser.add_argument("--no-wait", action="store_true", help="print the id and return")
    parser.add_argument("--api", help="API base URL (default: $TRAINSHIP_API or the local "
                                      "stack)")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.set_defaults(func=cmd_rollback)
