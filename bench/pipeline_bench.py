"""Time to URL: what a local deployment costs on top of the training script itself.

``measure_overhead(runs=3, *, api_url=None, home=None, model_name="iris-bench",
script=None, warmup=True, timeout=600.0) -> dict``

Starts a local stack (process mode) in a temporary home, or uses the running one whose
API is ``api_url`` (``home`` to use a given home instead of a temporary one), deploys
the iris example (docs/examples/iris_sklearn.py, or ``script``) once to warm up, then
``runs`` times again, each a new version of the same model, all at once. Each run is
timed by this process's clock from just before the POST /deployments to the first
prediction the inference URL answers after the deployment succeeded; the script's own run
time is what the training runner measured around the script's process and printed in the
TrainModel build's log (``[trainship] script exited with 0 after 5.123 s``: the last such
line, which the runner prints after the script's output, and which must fit in the
TrainModel state); ``overhead_s`` is the wall time minus that. Nothing is taken from the
deployment's own record of its duration.

The answer (every figure in seconds)::

    {"overhead_s": 3.2,               # the median run's
     "wall_s": 8.5, "script_s": 5.3,  # the median run's
     "runs": [{"wall_s", "script_s", "overhead_s", "deployment_id", "version",
               "states": {...}, "build_phases": {...}}, ...],
     "states": {"Submit": 0.1, "ValidateRequest": 0.2, ..., "Observe": 0.1},
     "build_phases": {"TrainModel": {"INSTALL": 0.1, ...}, "BuildImage": {...}}}

``states`` splits the median run's wall time (they add up to ``wall_s``): ``Submit`` from
the POST to the first state entered, each state from its entry to the next state's (a
state entered several times, such as the rollout loop's, summed), ``Observe`` from the
last state's exit to the answered prediction. ``build_phases`` are the builds' phases
from the time stamps on the local CodeBuild's ``[Container]`` lines.

Alone: ``python -m bench.pipeline_bench [--runs N] [--api URL]`` prints the breakdown and
a last line ``pipeline overhead_s=<median>``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "iris_sklearn.py"
ROWS = {"dataframe_split": {
    "columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                "petal width (cm)"],
    "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}
# how often the record is read while a deployment runs (the error of the wall time)
POLL_SECONDS = 0.05

_SCRIPT_LINE = re.compile(r"^\[trainship\] script exited with 0 after ([0-9.]+) s$",
                          re.MULTILINE)
_CONTAINER_LINE = re.compile(
    r"^\[Container\] (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+) (.*)$", re.MULTILINE)


# --- pure parts (tests/unit/test_pipeline_bench.py) --------------------------------------

def script_seconds(log: str) -> float:
    """The script's own run time from a deployment's build logs: the runner's last
    ``script exited with 0 after N s`` line (a line the script prints itself comes before
    the runner's)."""
    found = _SCRIPT_LINE.findall(log)
    if not found:
        raise ValueError("no '[trainship] script exited with 0 after N s' line in the logs")
    return float(found[-1])


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def state_breakdown(steps: Sequence[Mapping[str, Any]], posted: float,
                    answered: float) -> dict[str, float]:
    """Split the wall time from ``posted`` to ``answered`` (epoch seconds) by state.

    ``steps`` are the deployment record's steps (name, ISO ``entered``, ``seconds`` once
    exited), in order. The parts add up to ``answered - posted``."""
    if not steps:
        raise ValueError("the deployment has no steps")
    parts: dict[str, float] = {"Submit": _stamp(steps[0]["entered"]) - posted}
    for step, following in itertools.pairwise(steps):
        parts[step["name"]] = (parts.get(step["name"], 0.0)
                               + _stamp(following["entered"]) - _stamp(step["entered"]))
    last = steps[-1]
    last_exit = min(_stamp(last["entered"]) + float(last.get("seconds") or 0.0), answered)
    parts[last["name"]] = parts.get(last["name"], 0.0) + last_exit - _stamp(last["entered"])
    parts["Observe"] = answered - last_exit
    return {name: round(seconds, 3) for name, seconds in parts.items()}


def build_phases(log: str) -> dict[str, float]:
    """Seconds per phase (and per command, as ``PHASE: command``) of one build's log, from
    its ``[Container] <time> ...`` lines."""
    lines = [(datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").replace(tzinfo=UTC)
              .timestamp(), text) for stamp, text in _CONTAINER_LINE.findall(log)]
    phases: dict[str, float] = {}
    phase, phase_start = None, 0.0
    command, command_start = None, 0.0
    for when, text in lines:
        if command is not None and phase is not None:
            key = f"{phase}: {command}"
            phases[key] = round(phases.get(key, 0.0) + when - command_start, 3)
            command = None
        if text.startswith("Entering phase "):
            phase, phase_start = text.removeprefix("Entering phase ").strip(), when
        elif text.startswith("Running command ") and phase is not None:
            command, command_start = text.removeprefix("Running command ").strip(), when
        elif text.startswith("Phase complete: ") and phase is not None:
            phases[phase] = round(phases.get(phase, 0.0) + when - phase_start, 3)
            phase = None
    return phases


def median_run(runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The run whose overhead is the median (the lower middle one for an even count)."""
    if not runs:
        raise ValueError("no runs")
    ordered = sorted(runs, key=lambda run: float(run["overhead_s"]))
    return ordered[(len(ordered) - 1) // 2]


# --- driving a stack -------------------------------------------------------------------

def _answered(url: str, deadline: float) -> float:
    """When the inference URL first answers a prediction (epoch seconds)."""
    body = json.dumps(ROWS).encode()
    while True:
        request = urllib.request.Request(f"{url}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                if response.status == 200:
                    return time.time()
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer a prediction")
        time.sleep(POLL_SECONDS)


def deploy_once(client: Any, model_name: str, script: str,
                timeout: float = 600.0) -> dict[str, Any]:
    """One deployment, timed from the POST to the URL's first answer."""
    body = {"model_name": model_name, "script": script, "rollout": "all-at-once"}
    deadline = time.monotonic() + timeout
    posted = time.time()
    deployment_id = client.submit(body)["deployment_id"]
    while True:
        record = client.get(deployment_id)
        if record["status"] != "RUNNING":
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"deployment {deployment_id} still running")
        time.sleep(POLL_SECONDS)
    if record["status"] != "SUCCEEDED":
        raise RuntimeError(f"deployment {deployment_id} {record['status']}: "
                           f"{json.dumps(record.get('error'))}")
    answered = _answered(record["result"]["inference_url"], deadline)
    logs = client.logs(deployment_id)
    script_s = script_seconds(logs)
    wall = answered - posted
    by_step: dict[str, dict[str, float]] = {}
    for build in record.get("builds") or []:
        link = (build.get("logs") or {}).get("DeepLink") or ""
        builds: dict[str, float] = {}
        if link.startswith("file://"):  # the local CodeBuild's log file
            path = Path(urllib.request.url2pathname(link.removeprefix("file://")))
            if path.exists():
                builds = build_phases(path.read_text(errors="replace"))
        by_step[str(build.get("step"))] = builds
    states = state_breakdown(record["steps"], posted, answered)
    if not 0 < script_s < states.get("TrainModel", 0.0):
        raise ValueError(f"deployment {deployment_id}: the script's {script_s} s do not fit in "
                         f"its TrainModel state ({states.get('TrainModel')} s)")
    return {"deployment_id": deployment_id, "version": record["result"]["model_version"],
            "wall_s": round(wall, 3), "script_s": script_s,
            "overhead_s": round(wall - script_s, 3), "states": states,
            "build_phases": by_step}


@contextmanager
def _stack(api_url: str | None, home: Path | None) -> Iterator[str]:
    if api_url:
        yield api_url
        return
    from trainship.local import stack

    with tempfile.TemporaryDirectory(prefix="trainship-pipeline-bench-") as tmp:
        where = home or Path(tmp)
        info = stack.up(where)
        try:
            yield str(info["api"])
        finally:
            stack.down(where)


def measure_overhead(runs: int = 3, *, api_url: str | None = None, home: Path | None = None,
                     model_name: str = "iris-bench", script: str | None = None,
                     warmup: bool = True, timeout: float = 600.0) -> dict[str, Any]:
    """The median ``overhead_s`` of ``runs`` deployments of the iris example on a warm
    local stack, with the median run's breakdown (see the module's docstring)."""
    from trainship.client import Client

    if runs < 1:
        raise ValueError("runs must be at least 1")
    os.environ.setdefault("TRAINSHIP_CLUSTER", "process")
    text = script if script is not None else EXAMPLE.read_text()
    with _stack(api_url, home) as url:
        client = Client(url)
        if warmup:
            deploy_once(client, model_name, text, timeout)
        done = [deploy_once(client, model_name, text, timeout) for _ in range(runs)]
    middle = median_run(done)
    return {"overhead_s": middle["overhead_s"], "wall_s": middle["wall_s"],
            "script_s": middle["script_s"], "runs": done, "states": middle["states"],
            "build_phases": middle["build_phases"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--api", help="a running local stack's API URL (default: start one)")
    parser.add_argument("--model-name", default="iris-bench")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    args = parser.parse_args(argv)
    result = measure_overhead(args.runs, api_url=args.api, model_name=args.model_name,
                              warmup=not args.no_warmup)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for run in result["runs"]:
            print(f"v{run['version']}: wall {run['wall_s']:.2f} s, script "
                  f"{run['script_s']:.2f} s, overhead {run['overhead_s']:.2f} s")
        print("median run by state:")
        for name, seconds in result["states"].items():
            print(f"  {name:<22} {seconds:7.2f} s")
        for step, phases in result["build_phases"].items():
            print(f"  {step} build:")
            for name, seconds in phases.items():
                print(f"    {name[:70]:<70} {seconds:7.2f} s")
    print(f"pipeline overhead_s={result['overhead_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
