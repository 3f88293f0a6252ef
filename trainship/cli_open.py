"""``trainship open DEPLOYMENT``: the deployment's execution view.

On the local stack: the console's page (docs/console.md), printed and opened in a browser
when this machine has one. On AWS: the Step Functions console's execution details page of
the deployment's execution, printed (it needs a console sign-in, which the CLI does not
have)."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
import webbrowser
from typing import Any

from trainship.cli_common import API_HELP, resolve_api
from trainship.client import ApiError, Client
from trainship.config import CliSettings
from trainship.terminal import EXIT_FAILED, EXIT_OK, CliError, refused


def execution_console_url(execution_arn: str) -> str:
    """The Step Functions console's Execution Details page of an execution
    (https://docs.aws.amazon.com/step-functions/latest/dg/exec-details-interface-overview.html
    describes the page; its address, the console's own and not an API, has the form
    https://REGION.console.aws.amazon.com/states/home?region=REGION#/v2/executions/details/ARN,
    the region being the ARN's: arn:PARTITION:states:REGION:ACCOUNT:execution:MACHINE:NAME)."""
    parts = execution_arn.split(":")
    if len(parts) < 8 or parts[2] != "states" or parts[5] != "execution":
        raise ValueError(f"{execution_arn!r} is not a Step Functions execution ARN")
    region = parts[3]
    return (f"https://{region}.console.aws.amazon.com/states/home?region={region}"
            f"#/v2/executions/details/{execution_arn}")


def local_console(api: str, settings: CliSettings) -> str | None:
    """The local stack's console URL when ``api`` is that stack's API, else None."""
    from trainship.local import stack

    info = stack.read_info(settings.home)
    if info is None or str(info.get("api", "")).rstrip("/") != api.rstrip("/"):
        return None
    console = info.get("console")
    return str(console) if console else None


def has_browser(environ: Any = None) -> bool:
    """A graphical browser can open here: macOS, Windows, a display, or $BROWSER set.
    (Without a display, webbrowser falls back to text browsers such as lynx, which would
    take over the terminal.)"""
    env = os.environ if environ is None else environ
    return (sys.platform in ("darwin", "win32") or bool(env.get("BROWSER"))
            or bool(env.get("DISPLAY")) or bool(env.get("WAYLAND_DISPLAY")))


def cmd_open(args: argparse.Namespace, settings: CliSettings) -> int:
    api = resolve_api(args.api, settings, start=False)
    client = Client(api)
    try:
        record = client.get(args.deployment_id)  # a 404 here: no such deployment
    except ApiError as exc:
        return refused(exc)
    console = local_console(api, settings)
    if console is not None:
        url = f"{console}/deployments/{urllib.parse.quote(record['deployment_id'], safe='')}"
        print(url)
        if not args.no_browser and has_browser():
            try:
                webbrowser.open(url)
            except webbrowser.Error:
                pass  # the URL is printed
        return EXIT_OK
    arn = record.get("execution_arn")
    if not arn:
        raise CliError(f"deployment {record['deployment_id']} has no execution ARN to link "
                       "to", EXIT_FAILED)
    print(execution_console_url(arn))
    return EXIT_OK


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "open", help="a deployment's execution view: the local console's page (opened in "
                     "a browser), or on AWS the Step Functions console's URL")
    parser.add_argument("deployment_id")
    parser.add_argument("--no-browser", action="store_true",
                        help="print the URL only")
    parser.add_argument("--api", help=API_HELP)
    parser.set_defaults(func=cmd_open)
