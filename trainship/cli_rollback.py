"""``trainship rollback NAME --to N``: serve an earlier registered version again.

POST /models/{NAME}/rollback; the API refuses what cannot be rolled back (an error
document, nothing changed) and starts the rollback's execution, which this command follows
like ``trainship deploy`` (``--no-wait``: print its id and return).
"""

from __future__ import annotations

import argparse
from typing import Any

from trainship.cli_common import add_api_options, resolve_api, start_and_follow
from trainship.client import Client
from trainship.config import CliSettings


def cmd_rollback(args: argparse.Namespace, settings: CliSettings) -> int:
    client = Client(resolve_api(args.api, settings))
    return start_and_follow(client, lambda: client.rollback(args.model_name, args.to), args,
                            what=f"rollback of {args.model_name} to version {args.to}:")


def add_parser(sub: Any) -> None:
    """The ``rollback`` command on the CLI's subparsers."""
    parser = sub.add_parser(
        "rollback", help="serve an earlier version of a model again from its image (no "
                         "training, no build; same URL, same rollout checks and smoke test)")
    parser.add_argument("model_name", help="the registered model's name (e.g. test_model)")
    parser.add_argument("--to", required=True, metavar="N",
                        help="the version to serve again (one that served before)")
    add_api_options(parser, no_wait=True)
    parser.set_defaults(func=cmd_rollback)
