"""``trainship delete NAME [--purge] [--no-wait]``: take a model out of service.

DELETE /models/{model_name} starts an execution (trainship.removal); the command then waits
for it as ``trainship deploy`` does (trainship.cli_common).
"""

from __future__ import annotations

import argparse
import sys

from trainship.cli_common import follow, resolve_api
from trainship.client import ApiError, Client
from trainship.config import CliSettings
from trainship.terminal import EXIT_INTERRUPTED, EXIT_OK, CliError, print_json, refused


def cmd_delete(args: argparse.Namespace, settings: CliSettings) -> int:
    client = Client(resolve_api(args.api, settings))
    try:
        accepted = client.delete_model(args.model_name, purge=args.purge)
    except ApiError as exc:  # ModelNotFound, DeploymentInProgress: nothing changed
        return refused(exc, args.output)
    except KeyboardInterrupt:
        raise CliError("interrupted before the API answered; the delete may have started: "
                       "`trainship list` shows it", EXIT_INTERRUPTED) from None
    deployment_id = accepted["deployment_id"]
    text = args.output != "json"
    if text:
        print(f"delete {deployment_id} of {args.model_name} started", file=sys.stderr,
              flush=True)
    if args.no_wait:
        print_json(accepted) if not text else print(deployment_id)
        return EXIT_OK
    return follow(client, deployment_id, args)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    delete = sub.add_parser(
        "delete", help="take a model out of service (its Kubernetes objects, local processes "
                       "and proxies; the MLflow alias moves off); its registered versions and "
                       "images stay unless --purge")
    delete.add_argument("model_name", help="the model_name it was deployed with")
    delete.add_argument("--purge", action="store_true",
                        help="also delete the registered model (every version) and its images")
    delete.add_argument("--no-wait", action="store_true", help="print the id and return")
    delete.add_argument("--api", help="API base URL (default: $TRAINSHIP_API or the local "
                                      "stack)")
    delete.add_argument("--output", choices=("text", "json"), default="text")
    delete.set_defaults(func=cmd_delete)
