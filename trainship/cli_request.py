"""A deployment request from the command line: the script and requirements files read
(one-line errors for what cannot be), and the POST body made of the arguments."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

from trainship.cli_rollout import rollout_field
from trainship.terminal import EXIT_USAGE, CliError


def read_file(name: str, what: str) -> bytes:
    try:
        return Path(name).read_bytes()
    except FileNotFoundError:
        raise CliError(f"{what} {name}: no such file; check the path", EXIT_USAGE) from None
    except IsADirectoryError:
        raise CliError(f"{what} {name} is a directory; give the file", EXIT_USAGE) from None
    except OSError as exc:
        raise CliError(f"cannot read {what} {name}: {exc.strerror or exc}; check the path and "
                       "its permissions", EXIT_USAGE) from None


def utf8_text(data: bytes, name: str, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{what} {name} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                       "save it as UTF-8", EXIT_USAGE) from None


def read_script(name: str) -> bytes:
    return read_file(name, "training script")


def read_requirements(values: list[str] | None, files: list[str] | None) -> list[str]:
    reqs = list(values or [])
    for name in files or []:
        text = utf8_text(read_file(name, "requirements file"), name, "requirements file")
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                reqs.append(line)
    return reqs


def request_body(args: argparse.Namespace, script_field: str) -> dict[str, Any]:
    """The POST /deployments body from ``deploy``/``request`` arguments. ``script_field``:
    ``script`` (the text) or ``script_content`` (base64, the original /mlops/deploy field)."""
    rollout = rollout_field(args)  # before the files: a usage error needs none of them
    data = read_script(args.script)
    script: str = (utf8_text(data, args.script, "training script") if script_field == "script"
                   else base64.b64encode(data).decode("ascii"))
    body: dict[str, Any] = {"model_name": args.model_name, script_field: script,
                            "requirements": read_requirements(args.requirements,
                                                              args.requirements_file)}
    timeout_field = "timeout_seconds" if script_field == "script" else "timeout"
    for field, value in (("experiment_name", args.experiment_name),
                         (timeout_field, args.timeout), ("replicas", args.replicas),
                         ("target", args.target), ("auth", getattr(args, "auth", None))):
        if value is not None:
            body[field] = value
    if getattr(args, "debug", False):
        body["debug"] = True
    if rollout is not None:
        body["rollout"] = rollout
    return body
