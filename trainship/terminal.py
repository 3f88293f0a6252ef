"""What the CLI shows and how it ends: exit codes, one-line errors, error documents, and a
deployment's progress and result (trainship.cli; `make demo` follows a deployment too)."""

from __future__ import annotations

import json
import sys
import textwrap
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from trainship.cli_canary import failure_lines, result_lines
from trainship.client import ApiError, ApiUnavailable, Client
from trainship.pipeline import TERMINAL_STATUSES
from trainship.records import CostJson, RecordJson

# Exit codes (README "Exit codes" lists them; tests/unit/test_cli_*.py check each).
EXIT_OK = 0
EXIT_FAILED = 1  # the deployment ended FAILED, TIMED_OUT or ABORTED; `local status`: not running
EXIT_USAGE = 2  # bad arguments, or a local file that cannot be read (argparse uses 2 as well)
EXIT_REFUSED = 3  # the API refused the request: a 4xx error document (InvalidRequest, ...)
EXIT_UNAVAILABLE = 4  # no API: connection refused, timeout, 5xx, not JSON, stack not running
EXIT_STILL_RUNNING = 5  # the CLI stopped waiting; the deployment is still running
EXIT_INTERNAL = 70  # a bug in trainship (TRAINSHIP_DEBUG=1 shows the traceback)
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # stdout closed early (`trainship logs ID | head`)
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "the deployment failed (its error document is printed)",
    EXIT_USAGE: "bad arguments, or a script or requirements file that cannot be read",
    EXIT_REFUSED: "the API refused the request (4xx error document)",
    EXIT_UNAVAILABLE: "the API cannot be reached or answered unexpectedly",
    EXIT_STILL_RUNNING: "gave up waiting (the deployment is still running)",
    EXIT_INTERNAL: "internal error in trainship",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_BROKEN_PIPE: "stdout was closed early",
}
POLL_RETRY_SECONDS = 60  # how long `deploy` keeps polling through API hiccups
# how often `deploy` reads the deployment: an API on this machine (the local stack) often,
# so the URL is printed moments after the deployment ends; a remote one (API Gateway: each
# call is billed and throttled) once a second
LOCAL_POLL_SECONDS = 0.2
REMOTE_POLL_SECONDS = 1.0


def poll_seconds(base_url: str) -> float:
    host = urllib.parse.urlsplit(base_url).hostname or ""
    return LOCAL_POLL_SECONDS if host in ("127.0.0.1", "localhost", "::1") \
        else REMOTE_POLL_SECONDS


class CliError(Exception):
    """A failure the CLI reports in one line (``str(exc)``) with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    print(f"trainship: {message}", file=sys.stderr, flush=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_error(doc: Mapping[str, Any], http_status: int | None = None) -> None:
    """An error document (trainship.records.ErrorJson, or what a proxy answered) on stderr."""
    name = doc.get("error")
    if http_status and name == f"HTTP{http_status}":
        print(f"error:   HTTP {http_status}", file=sys.stderr)
    else:
        print(f"error:   {name}" + (f" (HTTP {http_status})" if http_status else ""),
              file=sys.stderr)
    if doc.get("step"):
        print(f"step:    {doc.get('step')}", file=sys.stderr)
    print(f"message: {doc.get('message')}", file=sys.stderr)
    table = (failure_lines(str(doc["details"]))
             if doc.get("error") == "CanaryFailed" and doc.get("details") else None)
    if table is not None:  # the numbers that decided the rollback, readable
        print("details:\n" + "\n".join(table), file=sys.stderr)
    elif doc.get("details"):
        print("details:\n  " + str(doc["details"]).replace("\n", "\n  "), file=sys.stderr)
    if doc.get("help"):
        print(f"help:    {doc.get('help')}", file=sys.stderr)


def wait_for(client: Client, deployment_id: str, *, progress: bool, poll: float | None = None,
             timeout: float = 7800) -> RecordJson:
    """Poll until the deployment ends (every ``poll`` seconds; default: poll_seconds of the
    API's URL); show each state as it is entered, with elapsed time.

    States of the rollout loop (WaitForRollout, CheckRollout, IsRolloutDone) and of the
    canary loop (ShiftTraffic, WaitForCanary, JudgeCanary, CanaryVerdict) repeat; each
    name is shown once.
    """
    if poll is None:
        poll = poll_seconds(client.base_url)
    started = time.monotonic()
    entered: set[str] = set()
    finished: set[str] = set()
    done = 0
    # a canary's share and verdicts printed (0: its new version starts with none)
    shown: tuple[int | None, int] = (0, 0)
    failing_since: float | None = None
    while True:
        try:
            record = client.get(deployment_id)
        except (ApiUnavailable, ApiError) as exc:
            # a long wait outlives a dropped connection, a restart or throttling
            transient = not isinstance(exc, ApiError) or exc.status >= 500 or exc.status == 429
            failing_since = failing_since or time.monotonic()
            if not transient or time.monotonic() - failing_since > POLL_RETRY_SECONDS:
                raise
            time.sleep(poll)
            continue
        failing_since = None
        steps = record.get("steps", [])
        if progress:
            for step in steps[done:]:
                name, status = step["name"], step["status"]
                elapsed = f"[{time.monotonic() - started:6.1f}s]"
                if status == "RUNNING":
                    if name not in entered:
                        print(f"  {elapsed} {name} ...", file=sys.stderr, flush=True)
                        entered.add(name)
                    break
                if name not in finished or status == "FAILED":
                    seconds = step.get("seconds")
                    print(f"  {elapsed} {name} {status.lower()}"
                          f"{'' if seconds is None else f' ({seconds}s)'}",
                          file=sys.stderr, flush=True)
                    entered.add(name)
                    finished.add(name)
                done += 1
            shown = show_canary(record.get("canary"), shown, started)
        if record["status"] in TERMINAL_STATUSES:
            return record
        if time.monotonic() - started > timeout:
            raise CliError(f"gave up waiting after {timeout:.0f} s: deployment {deployment_id} "
                           "is still running; follow it with `trainship status "
                           f"{deployment_id}`", EXIT_STILL_RUNNING)
        time.sleep(poll)


def show_canary(progress: Mapping[str, Any] | None, shown: tuple[int | None, int],
                started: float) -> tuple[int | None, int]:
    """While following a deployment: each new verdict of a canary and each new share of the
    traffic the new version has, once (stderr, like the states). ``shown``: the share and
    the number of verdicts printed so far; returns them after this record."""
    if not progress:
        return shown
    share, judged = shown
    elapsed = f"[{time.monotonic() - started:6.1f}s]"
    verdicts = progress.get("verdicts") or []
    for verdict in verdicts[judged:]:
        numbers = verdict.get("numbers") or {}
        print(f"  {elapsed} canary step {numbers.get('step')}/{numbers.get('steps')}: "
              f"{verdict.get('action')}: {verdict.get('reason')}", file=sys.stderr, flush=True)
    effective = progress.get("effective_share")
    if effective is not None and effective != share:
        # the share ShiftTraffic set; "step" may already be the next one (CanaryVerdict)
        print(f"  {elapsed} canary: the new version has {effective}% of the traffic",
              file=sys.stderr, flush=True)
        share = effective
    return share, max(judged, len(verdicts))


def report(record: RecordJson, output: str) -> int:
    ok = record["status"] == "SUCCEEDED"
    if output == "json":
        print_json(record.get("result") if ok else {"status": record["status"],
                                                      "deployment_id": record["deployment_id"],
                                                      **(record.get("error") or {})})
        return EXIT_OK if ok else EXIT_FAILED
    if ok:
        result = record["result"]
        for key in ("status", "deployment_id", "inference_url", "model_name", "serving_name",
                    "model_version", "image_uri", "deployment_time_seconds", "auth",
                    "inference_token", "message"):
            if key in result:
                print(f"{key + ':':26} {result.get(key)}")
        for item in result.get("removed", []):  # a delete's (trainship.state.RemovalResult)
            print(f"{'removed:':26} {item}")
        for line in result_lines(result):
            print(line)
        if "inference_url" in result and result.get("action") != "rotate-token":
            bearer = (" -H 'Authorization: Bearer $TOKEN'" if result.get("auth") == "token"
                      else "")
            print(f"{'try:':26} curl -s -H 'Content-Type: application/json'{bearer} "
                  f"-d '{{\"inputs\": [[...]]}}' {result['inference_url']}/invocations")
        return EXIT_OK
    print(f"status:  {record['status']}  ({record['deployment_id']})", file=sys.stderr)
    print_error(record.get("error") or {})
    return EXIT_FAILED


def dollars(usd: float | None) -> str:
    """A receipt's amount: six decimals, or two significant digits below a millionth."""
    if usd is None:
        return "(no price)"
    return f"${usd:.2e}" if 0 < usd < 0.000001 else f"${usd:.6f}"


def print_cost(cost: CostJson) -> None:
    """The cost receipt of `trainship status` (docs/deploy-to-aws.md, "The cost receipt")."""
    so_far = "" if cost["final"] else ", so far"
    print(f"cost: {dollars(cost['total_usd'])} at AWS list prices ({cost['region']}, prices "
          f"as of {cost['prices_as_of']}{so_far})")

    def line(label: str, usage: str, usd: float | None) -> None:
        print(f"  {label:26} {usage:40} {dollars(usd)}")

    line("state transitions", str(cost["state_transitions"]), cost["state_transitions_usd"])
    for fn in cost["lambda_functions"]:
        calls = f"{fn['invocations']} call{'' if fn['invocations'] == 1 else 's'}"
        line(f"Lambda {fn['function']}", f"{calls}, {fn['billed_ms']} ms x {fn['memory_mb']} "
             f"MB = {fn['gb_seconds']:g} GB-s", fn["usd"])
    for build in cost["builds"]:
        line(f"CodeBuild {build['step']}", f"{build['seconds']:g} s -> "
             f"{build['billed_minutes']} min", build["usd"])
    for item in cost["build_minutes"]:
        line("build minutes", f"{item['billed_minutes']} min {item['environment_type']} "
             f"{item['compute_type'].removeprefix('BUILD_')}", item["usd"])
    for unpriced in cost["unpriced"]:
        print(f"  not priced: {unpriced}")
    print(textwrap.fill("not counted: " + "; ".join(cost["excludes"]), width=88,
                        initial_indent="  ", subsequent_indent="    "))


def api_failure(exc: ApiError) -> CliError:
    """A 5xx: the API (or the gateway in front of it) failed; not the request's fault."""
    doc = exc.document
    name = doc.get("error")
    what = " ".join(str(x) for x in (None if name == f"HTTP{exc.status}" else name,
                                     doc.get("message")) if x)
    return CliError(f"the API failed with HTTP {exc.status}" + (f" ({what})" if what else "")
                    + "; try again, and if it keeps failing check the API's logs (locally: "
                    "stack.log in the state directory)", EXIT_UNAVAILABLE)


def refused(exc: ApiError, output: str = "text") -> int:
    """A 4xx error document: printed whole; exit EXIT_REFUSED. A 5xx: one line."""
    if exc.status >= 500:
        raise api_failure(exc)
    doc = exc.document
    if doc.get("error") == f"HTTP{exc.status}" and not doc.get("help"):
        # not a trainship error document (a proxy, another server, a gateway's own answer)
        doc = {**doc, "help": "This is not a trainship error document: check that --api / "
                              "TRAINSHIP_API is the trainship API's base URL (on AWS: the "
                              "stack's ApiUrl output, called with AWS credentials)"}
    if output == "json":
        print_json(doc)
    else:
        print_error(doc, exc.status)
    return EXIT_REFUSED
