"""``trainship delete NAME [--purge] [--no-wait]``: take a model out of service.

DELETE /models/{model_name} starts an execution (trainship.removal); the command then waits
for it as ``trainship deploy`` does (trainship.cli_common).
"""

from __future__ import annotations

import argparse

from trainship.cli_common import add_api_options, resolve_api, start_and_follow
from trainship.client import Client
from trainship.config import CliSettings


def cmd_delete(args: argparse.Namespace, settings: CliSettings) -> int:
    client = Client(resolve_api(args.api, settings))
    return start_and_follow(
        client, lambda: client.delete_model(args.model_name, purge=args.purge), args,
        what=f"delete of {args.model_name}:")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    delete = sub.add_parser(
        "delete", help="take a model out of service (its Kubernetes objects, local processes "
                       "and proxies; the MLflow alias moves off); its registered versions and "
                       "images stay unless --purge")
    delete.add_argument("model_name", help="the model_name it was deployed with")
    delete.add_argument("--purge", action="store_true",
                        help="also delete the registered model (every version) and its images")
    add_api_options(delete, no_wait=True)
    delete.set_defaults(func=cmd_delete)
