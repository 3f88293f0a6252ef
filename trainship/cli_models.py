"""``trainship models [NAME]``: what serves (GET /models) and one model's history
(GET /models/{model_name}), as a table or as JSON."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from trainship.cli_common import resolve_api
from trainship.client import ApiError, Client
from trainship.config import CliSettings
from trainship.records import ModelDetailJson, ModelJson
from trainship.terminal import EXIT_OK, print_json, refused


def _table(rows: Sequence[Sequence[Any]]) -> None:
    """Columns as wide as their widest cell, two spaces apart; None shows as '-'."""
    cells = [["-" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())


def print_models(models: list[ModelJson]) -> None:
    if not models:
        print("trainship: no model serves (`trainship deploy` puts one there)", file=sys.stderr)
        return
    _table([("MODEL", "SERVING NAME", "LIVE", "TARGET", "SINCE", "INFERENCE URL"),
            *[(m["model_name"], m["serving_name"], m["live_version"], m["target"],
               m["live_since"], m["inference_url"]) for m in models]])


def _period(period: Any) -> str:
    return (f"{period['from']} - {period['to'] or 'now'}"
            + (f" ({period['deployment_id']})" if period.get("deployment_id") else ""))


def print_model(model: ModelDetailJson) -> None:
    print(f"{'model:':15} {model['model_name']} (serving name {model['serving_name']})")
    if model["live_version"] is None:
        print(f"{'live version:':15} none: the model serves nothing")
    else:
        since = f" since {model['live_since']}" if model["live_since"] else ""
        by = f" (deployment {model['deployment_id']})" if model["deployment_id"] else ""
        print(f"{'live version:':15} {model['live_version']}{since}{by}")
        for key, value in (("inference_url", model["inference_url"]),
                           ("image_uri", model["image_uri"]), ("target", model["target"])):
            print(f"{key + ':':15} {value or '-'}")
    rows: list[tuple[Any, ...]] = [("VERSION", "LIVE", "REGISTERED", "SERVED")]
    for version in model["versions"]:
        periods = [_period(p) for p in version["served"]] or ["never"]
        rows.append((version["version"], "*" if version["live"] else "",
                     version["created_at"], periods[0]))
        rows.extend(("", "", "", more) for more in periods[1:])
    print()
    _table(rows)


def cmd_models(args: argparse.Namespace, settings: CliSettings) -> int:
    client = Client(resolve_api(args.api, settings, start=False))
    output = "json" if args.output == "json" else "text"
    try:
        answer: Any = client.model(args.model_name) if args.model_name else client.models()
    except ApiError as exc:
        return refused(exc, output)
    if output == "json":
        print_json(answer)
    elif args.model_name:
        print_model(answer)
    else:
        print_models(answer)
    return EXIT_OK


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """``trainship models [NAME] [--output table|json] [--api URL]``."""
    models: argparse.ArgumentParser = sub.add_parser(
        "models", help="the models that serve (live version, URL, image, since when), or "
                       "one model's versions and when each served")
    models.add_argument("model_name", nargs="?",
                        help="a registered-model name (as deployed: test_model)")
    models.add_argument("--api", help="API base URL (default: $TRAINSHIP_API or the local "
                                      "stack)")
    models.add_argument("--output", choices=("table", "text", "json"), default="table",
                        help="table (default; text is the same) or json: a list of models, "
                             "or the one model with its versions")
    models.set_defaults(func=cmd_models)
    return models
