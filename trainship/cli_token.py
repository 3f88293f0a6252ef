"""``trainship token rotate NAME [--no-wait]``: issue a model's new inference token.

POST /models/{NAME}/token starts the rotation's execution (trainship.token_rotation); the
command follows it like ``trainship deploy`` and, as deploy does, prints the new token once
and stores it for `trainship predict` (trainship.token_store). The old token stops working.
"""

from __future__ import annotations

import argparse
from typing import Any

from trainship.cli_common import add_api_options, resolve_api, start_and_follow
from trainship.client import Client
from trainship.config import CliSettings


def cmd_rotate(args: argparse.Namespace, settings: CliSettings) -> int:
    client = Client(resolve_api(args.api, settings))
    return start_and_follow(client, lambda: client.rotate_token(args.model_name), args,
                            what=f"token rotation of {args.model_name}:")


def add_parser(sub: Any) -> None:
    """The ``token`` command (``token rotate NAME``) on the CLI's subparsers."""
    token = sub.add_parser("token", help="a model's inference token")
    actions = token.add_subparsers(dest="token_action", required=True)
    rotate = actions.add_parser(
        "rotate", help="issue a new token for a model deployed with --auth token (printed "
                       "once and stored for `trainship predict`); the old one stops working "
                       "(on EKS within about 1-2 minutes)")
    rotate.add_argument("model_name", help="the registered model's name (e.g. test_model)")
    add_api_options(rotate, no_wait=True)
    rotate.set_defaults(func=cmd_rotate)
