"""`make bench`: trainship's inference service against `mlflow models serve`.

Same model (RandomForestClassifier, 100 trees, make_classification 1000 x 20), same box,
same load generator (wrk), measured in the same run and interleaved, so that each ratio
compares numbers taken in the same minutes (a shared VM's speed drifts by up to 2x over
minutes):
  * cold start: process start to the first /ping 200, each server started
    ``--coldstart-runs`` times (3) in alternation, the order rotated each round; the median;
  * 1 and 16 connections, 1-row and 100-row requests: ``--rounds`` rounds (3), in each
    every cell gets one wrk run of ``--seconds`` (5) per server, one server after the other
    (the order rotated each round); each figure is the median over the rounds;
  * the bounds on p50 at 1 connection (one 1-row predict call of the model) and on
    cold start (a fresh interpreter importing the service and loading the model);
  * a soak of trainship's service: 64 connections for 60 s, which must have 0 errors;
  * the image sizes: trainship's Dockerfile against `mlflow models generate-dockerfile`'s,
    both built with podman on the same base image.
Writes docs/benchmarks.md; the last line printed is
  serving rps_x=<a> p99_x=<b> p50_1conn_x=<c> coldstart_x=<d> limit_frac=<e> overhead_s=<f>
where each x figure is how many times better trainship is (rps: ours / MLflow's at 16
connections, 1 row; the others MLflow's / ours); limit_frac is trainship's req/s at 16
connections, 1 row, over the bound the model itself sets (see ``model_bound``); overhead_s
comes from the pipeline bench (``pipeline_overhead``), n/a without it. The report also has
token_rps_frac, what the token check leaves of trainship's req/s (the same service with
`auth: token` and a Bearer header on every request, over the service without).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from bench.image_bench import Rebuild, measure_rebuild  # noqa: E402

# the report's hand-written part: `make bench` rewrites what comes before it
HAND_WRITTEN = "## On AWS: where a deployment's minutes go"
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BENCH_BODY"), "r"):read("*a")
"""
BENCH_TOKEN = "tsk_bench-" + "x" * 32  # what a deployment with `auth: token` hands out
TRAINSHIP_WORKERS = os.cpu_count() or 1  # the service's default: one worker per core
CELLS = ((1, 1), (1, 100), (16, 1), (16, 100))  # (connections, rows per request)
FLOOR_RUNS = 3  # cold-start floor measurements (``coldstart_floor``)
# the cold-start floor: what the service must do before it may answer /ping, nothing else;
# with the collector off, as `python -m trainship.serving` starts, and without the
# interpreter's teardown (os._exit), which a server does not go through before its /ping
FLOOR_CODE = ("import gc\n"
              "gc.disable()\n"
              "import os\n"
              "import sys\n"
              "from pathlib import Path\n"
              "import trainship.serving.cli\n"
              "from trainship.serving.loading import load\n"
              "load(Path(sys.argv[1]), Path(sys.argv[2]))\n"
              "sys.stdout.flush()\n"
              "os._exit(0)\n")


@dataclass
class Bound:
    """What the model itself allows at 16 connections, 1 row (``model_bound``)."""

    rows_per_call: float  # mean rows per predict call the server formed in that cell
    predict_ms: float  # one predict call on that many rows (median, in this process)
    processes: int  # min(trainship's worker processes, cores)
    rps: float  # rows_per_call / predict time x processes


@dataclass
class Bounds:
    """The bounds on p50_1conn_x and coldstart_x (``bound_lines``)."""

    predict_1_ms: float  # one 1-row predict call (median, in this process)
    floor_s: float  # a fresh interpreter importing the service and loading the model


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def rotated(names: Sequence[str], round_: int) -> list[str]:
    """The order of the peers in round ``round_``: ``names`` rotated left by ``round_``, so
    each peer goes first (and last) equally often over len(names) rounds."""
    if not names:
        return []
    shift = round_ % len(names)
    return [*names[shift:], *names[:shift]]


def median_load(runs: Sequence[Load]) -> Load:
    """One cell's figures over its rounds: the median of req/s, p50 and p99, each taken on
    its own; requests and errors summed."""
    if not runs:
        raise ValueError("no runs to aggregate")
    return Load(statistics.median(r.rps for r in runs),
                statistics.median(r.p50_ms for r in runs),
                statistics.median(r.p99_ms for r in runs),
                sum(r.requests for r in runs), sum(r.errors for r in runs))


def rows_per_call(deltas: Sequence[tuple[float, float]]) -> float:
    """Mean rows per predict call over several runs, from each run's (rows, calls) deltas of
    the batch counters: all rows over all calls (1.0 when no call was counted)."""
    calls = sum(c for _, c in deltas)
    return sum(r for r, _ in deltas) / calls if calls else 1.0


def bound_lines(mlflow_p50_ms: float, predict_1_ms: float, mlflow_cold_s: float,
                floor_s: float) -> tuple[str, str]:
    """The two bounds as printed (and quoted in the report): p50 at 1 connection against
    one 1-row predict call, MLflow's cold start against the cold-start floor."""
    return (f"  p50 1-conn bound: 1-row predict {predict_1_ms:.2f} ms; MLflow p50 / that = "
            f"{mlflow_p50_ms / predict_1_ms:.2f}x",
            f"  coldstart floor: import + load {floor_s:.2f} s; MLflow cold start / that = "
            f"{mlflow_cold_s / floor_s:.2f}x")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_reference_model(target: Path, seed: int = 42) -> None:
    """The bench's model; another ``seed`` is a new version of it (same requirements)."""
    import mlflow.sklearn
    import skops.io
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(n_samples=1000, n_features=20, random_state=seed)
    model = RandomForestClassifier(n_estimators=100, random_state=seed).fit(x, y)
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    mlflow.sklearn.save_model(model, str(target), skops_trusted_types=trusted,
                              input_example=x[:2])


def server_env() -> dict[str, str]:
    """The served processes' environment: this interpreter's bin first, the repository on
    PYTHONPATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO)}


def start(cmd: list[str], port: int, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start a server and wait for its first /ping 200: (the process, seconds it took). A
    server that does not get there is stopped."""
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=server_env())
    try:
        deadline = started + 180
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited; see {log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as r:
                    if r.status == 200:
                        return proc, time.perf_counter() - started
            except (urllib.error.URLError, OSError):
                time.sleep(0.02)
        raise TimeoutError(f"{cmd} did not answer /ping")
    except BaseException:
        stop(proc)
        raise


def coldstart_floor(model: Path, cache: Path, runs: int = FLOOR_RUNS) -> float:
    """What a cold start cannot go below with this model: a fresh interpreter (this one,
    the served processes' environment) that imports the service's command line and loads
    the model from its load cache, then exits; timed from process start to exit, the
    median of ``runs``."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", FLOOR_CODE, str(model), str(cache)],
                       check=True, env=server_env(), stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def batch_counters(port: int) -> tuple[float, float]:
    """(rows predicted, predict calls) so far, from the service's /metrics (every worker's):
    trainship_batch_rows_total and the count of the trainship_batch_requests histogram."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()

    def value(name: str) -> float:
        match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    return value("trainship_batch_rows_total"), value("trainship_batch_requests_count")


def predict_seconds(model: Path, cache: Path, rows: int, repeats: int = 200) -> float:
    """One predict call of the loaded model on ``rows`` rows, as a worker makes it (the
    pyfunc model from the load cache, MLflow's schema enforcement included, the workers'
    warning filters): the median wall time of ``repeats`` calls, in this process."""
    import warnings

    import numpy as np
    from sklearn.datasets import make_classification

    from trainship.serving.loading import load
    from trainship.serving.warnings import runtime_warning_filters

    pyfunc = load(model, cache)
    x, _ = make_classification(n_samples=max(rows, 1), n_features=20, random_state=7)
    data = np.asarray(x[:rows], dtype=np.float64)
    times = []
    with warnings.catch_warnings():  # the workers' filters, for the calls only
        runtime_warning_filters()
        for _ in range(5):
            pyfunc.predict(data)
        for _ in range(repeats):
            started = time.perf_counter()
            pyfunc.predict(data)
            times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2]


def model_bound(model: Path, cache: Path, rows_per_call: float, workers: int) -> Bound:
    """The req/s the model itself allows for 1-row requests: each predict call answers
    ``rows_per_call`` requests (the mean the server formed) and takes ``predict_seconds`` on
    that many rows; at most min(workers, cores) calls run at once (each worker predicts in
    one thread at a time; a process cannot use more than one core for this model). The
    HTTP layer, parsing and the load generator's own CPU are left out, so the server can
    only come near it."""
    rows = max(1, round(rows_per_call))
    seconds = predict_seconds(model, cache, rows)
    processes = max(1, min(workers, os.cpu_count() or 1))
    return Bound(rows_per_call, seconds * 1000, processes, rows_per_call / seconds * processes)


def pipeline_overhead() -> dict[str, Any]:
    """The local pipeline's time to URL (bench/pipeline_bench.py): ``overhead_s``, the
    deployment's wall time less its script's own run time, with its breakdown."""
    from bench.pipeline_bench import measure_overhead  # REPO is on sys.path (the top)

    print("the local pipeline's time to URL (iris, process mode, warm stack) ...", flush=True)
    return measure_overhead()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server's process group (SIGTERM, SIGKILL after 20 s); one already gone is
    fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(timeout=20)


def _ms(text: str) -> float:
    """wrk's durations: 812.00us, 7.30ms, 1.02s, 1.50m."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
    return float(match.group(1)) * scale[match.group(2)]


def wrk(port: int, body: Path, connections: int, seconds: int, lua: Path) -> Load:
    proc = subprocess.run(
        ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{seconds}s",
         "--latency", "--timeout", "10s", "-s", str(lua), f"http://127.0.0.1:{port}/invocations"],
        capture_output=True, text=True, env={**os.environ, "BENCH_BODY": str(body)}, check=True)
    out = proc.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    if "Latency Distribution" not in out:
        raise RuntimeError(f"wrk completed no request:\n{out}\n{proc.stderr}")
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    return Load(rps, p50, p99, requests, errors)


BENCH_DOCKERFILE_SHIM = """FROM {base}
# trainship bench: the `python` and `pip` a python:slim image has, on the same Debian base;
# pip trusts the host's CA bundle (mounted at build time)
RUN python3 -m venv /opt/venv \\
 && printf '[global]\\ncert = /run/host-ca.crt\\n' > /opt/venv/pip.conf
ENV PATH=/opt/venv/bin:$PATH"""


def image_sizes(model: Path, work: Path) -> dict[str, str]:
    """Build trainship's image and the one `mlflow models generate-dockerfile` writes, on the
    same base image (the locally made Debian one), and return their sizes."""
    from trainship import containers
    from trainship.config import ImageSettings
    from trainship.image.context import METADATA
    from trainship.image.podman import PodmanBuilder
    from trainship.serving.model_spec import SPEC_FILE, write_spec

    if containers.missing_tools():
        return {"note": f"not measured: container tools missing ({containers.missing_tools()})"}
    home = work / "home"
    base = containers.ensure_base_image(home)
    sizes: dict[str, str] = {"base": base}

    def size(reference: str) -> int:
        out = containers.podman(home, "image", "inspect", "--format", "{{.Size}}", reference)
        return int(out.stdout.strip())

    context = work / "trainship-context"
    context.mkdir()
    shutil.copytree(model, context / "model")
    (context / METADATA).write_text("{}")
    # what the image build writes beside it: the model's own API (GET /openapi.json)
    write_spec(model, context / SPEC_FILE, title="bench", version="1")
    ours = "localhost/bench/trainship-model:latest"
    settings = replace(ImageSettings.from_env(), base_image=base, wheels="host", home=home)
    PodmanBuilder(settings).build(context, ours)
    sizes["trainship"] = str(size(ours))
    generated = work / "mlflow-generated"
    proc = subprocess.run([sys.executable, "-m", "mlflow", "models", "generate-dockerfile",
                           "-m", str(model), "-d", str(generated), "--env-manager", "local"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sizes["note"] = f"generate-dockerfile failed: {proc.stderr[-300:]}"
        return sizes
    dockerfile = generated / "Dockerfile"
    text = dockerfile.read_text()
    from_line = next(line for line in text.splitlines() if line.startswith("FROM "))
    sizes["mlflow_from"] = from_line
    (generated / "Dockerfile.bench").write_text(
        text.replace(from_line, BENCH_DOCKERFILE_SHIM.format(base=base), 1))
    theirs = "localhost/bench/mlflow-generated:latest"
    # their Dockerfile installs nginx with apt and mlflow with pip: it needs the network
    build = containers.podman(home, "build", "--format", "docker", "--network", "host",
                              "-v", "/etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro",
                              "-f", str(generated / "Dockerfile.bench"), "-t", theirs,
                              str(generated), check=False, timeout=3600)
    if build.returncode != 0:
        sizes["note"] = f"the MLflow-generated image did not build: {build.stderr[-300:]}"
        return sizes
    sizes["mlflow"] = str(size(theirs))
    sizes["base_size"] = str(size(base))
    return sizes


def measure_coldstarts(servers: dict[str, Callable[[int], list[str]]], runs: int, work: Path,
                       running: dict[str, tuple[subprocess.Popen[bytes], int]], model: Path,
                       cache: Path) -> tuple[dict[str, float], float]:
    """Each server started ``runs`` times, the servers alternating in an order rotated each
    round; each start is stopped right after its first /ping 200 but the last round's,
    which are kept in ``running`` (name: (process, port)) for the load cells; the caller
    stops them. Then the cold-start floor (``coldstart_floor``). Returns each server's
    median cold start and the floor."""
    names = list(servers)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(runs):
        last = round_ == runs - 1
        for name in rotated(names, round_):
            port = free_port()
            proc, cold = start(servers[name](port), port, work / f"{name}-{round_}.log")
            if last:
                running[name] = (proc, port)
            else:
                stop(proc)
            times[name].append(cold)
            print(f"{name}: first /ping after {cold:.2f} s (start {round_ + 1} of {runs})",
                  flush=True)
    coldstart = {name: statistics.median(times[name]) for name in names}
    print("cold start, median: " + ", ".join(f"{name} {seconds:.2f} s"
                                             for name, seconds in coldstart.items()), flush=True)
    floor = coldstart_floor(model, cache)
    print(f"cold-start floor (import the service, load the model): {floor:.2f} s", flush=True)
    return coldstart, floor


def measure_cells(names: list[str], running: dict[str, tuple[subprocess.Popen[bytes], int]],
                  bodies: dict[int, Path], lua: Path, luas: dict[str, Path],
                  args: argparse.Namespace,
                  ) -> tuple[dict[str, dict[str, Load]], list[tuple[float, float]]]:
    """The load cells, interleaved: a warm-up run per server, then ``args.rounds`` rounds;
    in each, every cell (``CELLS``) gets one wrk run of ``args.seconds`` per server, the
    servers in an order rotated each round. Returns each server's cells (the medians over
    the rounds, ``median_load``) and trainship's batch counter deltas (rows, calls) of
    each of its 16-connection, 1-row runs."""
    for name in names:
        port = running[name][1]
        wrk(port, bodies[1], 4, 2, luas.get(name, lua))  # warm-up
    runs: dict[str, dict[str, list[Load]]] = {name: {} for name in names}
    deltas: list[tuple[float, float]] = []
    for round_ in range(args.rounds):
        print(f"round {round_ + 1} of {args.rounds}", flush=True)
        for connections, rows in CELLS:
            key = f"{connections}c/{rows}r"
            for name in rotated(names, round_):
                port = running[name][1]
                counted = name == "trainship" and (connections, rows) == (16, 1)
                before = batch_counters(port) if counted else (0.0, 0.0)
                load = wrk(port, bodies[rows], connections, args.seconds,
                           luas.get(name, lua))
                if counted:
                    after = batch_counters(port)
                    deltas.append((after[0] - before[0], after[1] - before[1]))
                runs[name].setdefault(key, []).append(load)
                print(f"  {name:15} {connections:2} conn {rows:3} rows: {load.rps:8.1f} req/s"
                      f"  p50 {load.p50_ms:7.2f} ms  p99 {load.p99_ms:8.2f} ms"
                      f"  errors {load.errors}", flush=True)
    results = {name: {key: median_load(loads) for key, loads in cells.items()}
               for name, cells in runs.items()}
    print(f"medians over {args.rounds} rounds:", flush=True)
    for name, cells in results.items():
        for key, load in cells.items():
            print(f"  {name:15} {key:8}: {load.rps:8.1f} req/s  p50 {load.p50_ms:7.2f} ms"
                  f"  p99 {load.p99_ms:8.2f} ms  errors {load.errors}", flush=True)
    return results, deltas


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5,
                        help="each wrk run of a cell, per server and round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the load cells; each figure is their median")
    parser.add_argument("--coldstart-runs", type=int, default=3,
                        help="starts of each server; the cold start is their median")
    parser.add_argument("--soak-seconds", type=int, default=60)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--skip-images", action="store_true",
                        help="do not build and compare the two images")
    parser.add_argument("--skip-pipeline", action="store_true",
                        help="do not measure the local pipeline's time to URL")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.coldstart_runs < 1:
        parser.error("--rounds and --coldstart-runs must be at least 1")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package wrk; `make bench` installs it)")
    work = Path(tempfile.mkdtemp(prefix="trainship-bench-"))
    model = work / "model"
    print("training the reference model ...", flush=True)
    train_reference_model(model)
    from sklearn.datasets import make_classification

    x, _ = make_classification(n_samples=100, n_features=20, random_state=7)
    bodies = {}
    for rows in (1, 100):
        path = work / f"body{rows}.json"
        path.write_text(json.dumps({"inputs": x[:rows].tolist()}))
        bodies[rows] = path
    lua = work / "post.lua"
    lua.write_text(LUA)
    # the same requests with the model's token, to a service that checks it (`auth: token`,
    # the default on AWS): what the check costs per request
    token_lua = work / "post-token.lua"
    token_lua.write_text(LUA + f'wrk.headers["Authorization"] = "Bearer {BENCH_TOKEN}"\n')
    auth_file = work / "auth"
    auth_file.write_text(f"token {hashlib.sha256(BENCH_TOKEN.encode()).hexdigest()}\n")
    python = sys.executable
    # what the image build does once (the Dockerfile's builder stage): keep the loaded model
    cache = work / "load-cache" / "model.pkl"
    subprocess.run([python, "-m", "trainship.serving", "--model-dir", str(model),
                    "--load-cache", str(cache), "--prepare-load-cache"], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    servers: dict[str, Callable[[int], list[str]]] = {
        "mlflow": lambda port: [python, "-m", "mlflow", "models", "serve", "-m", str(model),
                                "-h", "127.0.0.1", "-p", str(port), "--env-manager", "local",
                                "-w", "1"],
        "trainship+token": lambda port: [python, "-m", "trainship.serving", "--model-dir",
                                         str(model), "--host", "127.0.0.1", "--port", str(port),
                                         "--load-cache", str(cache), "--auth-file",
                                         str(auth_file)],
        "trainship": lambda port: [python, "-m", "trainship.serving", "--model-dir",
                                   str(model), "--host", "127.0.0.1", "--port", str(port),
                                   "--load-cache", str(cache)],
    }
    luas = {"trainship+token": token_lua}
    names = list(servers)
    running: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        coldstart, floor = measure_coldstarts(servers, args.coldstart_runs, work, running,
                                              model, cache)
        results, deltas = measure_cells(names, running, bodies, lua, luas, args)
        # the model's own bounds, measured after the rounds with every server idle
        bound = model_bound(model, cache, rows_per_call(deltas), TRAINSHIP_WORKERS)
        print(f"  model bound: {bound.rows_per_call:.1f} rows per predict "
              f"call, {bound.predict_ms:.2f} ms per call, "
              f"x{bound.processes} processes: {bound.rps:.0f} req/s", flush=True)
        predict_1_ms = predict_seconds(model, cache, 1) * 1000
        bounds = bound_lines(results["mlflow"]["1c/1r"].p50_ms, predict_1_ms,
                             coldstart["mlflow"], floor)
        print("\n".join(bounds), flush=True)
        # the soak after the rounds: a soak just before one of the peers would slow it
        soak: Load | None = None
        if args.soak_seconds:
            soak = wrk(running["trainship"][1], bodies[1], 64, args.soak_seconds, lua)
            print(f"  soak: 64 conn {args.soak_seconds} s: {soak.requests} requests, "
                  f"{soak.rps:.1f} req/s, p99 {soak.p99_ms:.1f} ms, errors {soak.errors}",
                  flush=True)
    finally:
        for proc, _ in running.values():
            stop(proc)
    sizes: dict[str, str] = {}
    rebuild: Rebuild | None = None
    if not args.skip_images:
        rebuild = image_rebuild(model, work)
        print("building both images (podman) ...", flush=True)
        sizes = image_sizes(model, work)
        print(f"  images: {sizes}", flush=True)
    pipeline = None if args.skip_pipeline else pipeline_overhead()
    ours, theirs = results["trainship"], results["mlflow"]
    rps_x = ours["16c/1r"].rps / theirs["16c/1r"].rps
    p99_x = theirs["16c/1r"].p99_ms / ours["16c/1r"].p99_ms
    p50_x = theirs["1c/1r"].p50_ms / ours["1c/1r"].p50_ms
    cold_x = coldstart["mlflow"] / coldstart["trainship"]
    token = results["trainship+token"]["16c/1r"]
    token_x = token.rps / ours["16c/1r"].rps
    limit_frac = ours["16c/1r"].rps / bound.rps
    summary = (f"serving rps_x={rps_x:.2f} p99_x={p99_x:.2f} p50_1conn_x={p50_x:.2f} "
               f"coldstart_x={cold_x:.2f} limit_frac={limit_frac:.2f} "
               "overhead_s=" + (f"{pipeline['overhead_s']:.2f}" if pipeline else "n/a"))
    write_report(args.out, results, coldstart, soak, args, sizes, summary, bound, token_x,
                 rebuild, pipeline, Bounds(predict_1_ms, floor))
    shutil.rmtree(work, ignore_errors=True)
    print(f"report: {args.out}")
    if "mlflow" in sizes:
        print(f"image size: trainship {int(sizes['trainship']) / 1e6:.0f} MB, mlflow "
              f"{int(sizes['mlflow']) / 1e6:.0f} MB (ratio "
              f"{int(sizes['trainship']) / int(sizes['mlflow']):.2f})")
    print("\n".join(bounds))
    print(summary)
    return 0 if soak is None or soak.errors == 0 else 1


def write_report(out: Path, results: dict[str, dict[str, Load]], coldstart: dict[str, float],
                 soak: Load | None, args: argparse.Namespace, sizes: dict[str, str],
                 summary: str, bound: Bound, token_x: float, rebuild: Rebuild | None = None,
                 pipeline: dict[str, Any] | None = None, bounds: Bounds | None = None) -> None:
    kept = hand_written(out)
    lines = [
        "# Benchmarks: serving",
        "",
        "trainship's inference service against `mlflow models serve` (1 worker, "
        "`--env-manager local`) on the same model and box, measured in the same run by "
        "`make bench` (`bench/serving_bench.py`). Model: RandomForestClassifier, 100 trees, "
        "make_classification 1000 x 20. Load: wrk, JSON `inputs` bodies.",
        "",
        "The peers are measured interleaved, so that each ratio compares numbers taken in "
        "the same minutes (this box's speed drifts by up to 2x over minutes). Cold start: "
        f"each server started {args.coldstart_runs} times, the servers alternating in an "
        "order rotated each round, each start stopped right after its first /ping 200 "
        "(the last one kept for the load); the median. Load: after a 2 s warm-up per "
        f"server, {args.rounds} rounds; in each, every cell gets one wrk run of "
        f"{args.seconds} s per server, one server after the other, the order rotated each "
        "round. A cell's req/s, p50 and p99 are each the median over the rounds; its "
        "errors are summed.",
        "",
        f"Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}.",
        "",
        "| server | connections | rows | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, cells in results.items():
        for key, load in cells.items():
            conns, rows = key.replace("c", "").replace("r", "").split("/")
            lines.append(f"| {name} | {conns} | {rows} | {load.rps:.1f} | {load.p50_ms:.2f} | "
                         f"{load.p99_ms:.2f} | {load.errors} |")
    lines += ["", "| server | cold start to first /ping 200 (s) |", "|---|---|"]
    lines += [f"| {name} | {seconds:.2f} |" for name, seconds in coldstart.items()]
    if soak is not None:
        lines += ["", f"Soak (trainship): 64 connections for {args.soak_seconds} s: "
                      f"{soak.requests} requests, {soak.rps:.1f} req/s, p99 {soak.p99_ms:.1f} "
                      f"ms, **{soak.errors} errors**."]
    lines += ["", f"Ratios: `{summary}`", "",
              f"The model's own bound at 16 connections, 1 row: the server formed "
              f"{bound.rows_per_call:.1f} rows per predict call (trainship_batch_rows_total "
              "over the count of trainship_batch_requests, from its /metrics over that "
              "cell's runs in every round); one predict call on "
              f"{max(1, round(bound.rows_per_call))} rows takes "
              f"{bound.predict_ms:.2f} ms (the loaded model as a worker calls it, median "
              "of 200 calls in the bench process, after the rounds, the servers idle); "
              "times "
              f"min(workers, cores) = {bound.processes}: **{bound.rps:.0f} req/s**. "
              "`limit_frac` is trainship's req/s in that cell over this bound. The bound "
              "leaves out HTTP, parsing, answering and the load generator, which shares the "
              "cores, so 1.0 cannot be reached.", ""]
    if bounds is not None:
        mlflow_p50 = results["mlflow"]["1c/1r"].p50_ms
        mlflow_cold = coldstart["mlflow"]
        p50_line, cold_line = bound_lines(mlflow_p50, bounds.predict_1_ms, mlflow_cold,
                                          bounds.floor_s)
        lines += ["Two more bounds, on `p50_1conn_x` and `coldstart_x`:", "",
                  "```", p50_line, cold_line, "```", "",
                  f"At 1 connection a request cannot be answered faster than one 1-row "
                  f"predict call ({bounds.predict_1_ms:.2f} ms, median of 200 calls of the "
                  "loaded model in the bench process, the servers idle), so "
                  f"{mlflow_p50 / bounds.predict_1_ms:.2f} is the best `p50_1conn_x` any "
                  "server could reach with this model. The cold-start floor is a fresh "
                  "interpreter that imports the service (`trainship.serving.cli`), loads the "
                  "model from its load cache and exits (the collector off while it starts and "
                  "no interpreter teardown, as a server before its first /ping), timed from "
                  "process start to exit "
                  f"(median of {FLOOR_RUNS}, right after the cold starts): "
                  f"{bounds.floor_s:.2f} s, what trainship's service must do before it may "
                  f"answer /ping, so about {mlflow_cold / bounds.floor_s:.2f} is the best "
                  "`coldstart_x` it could reach without importing or loading less (about: "
                  "the floor and each server's cold start are medians of a few timings on a "
                  "VM whose speed drifts, so a server can come out at the floor or a little "
                  "under it).", ""]
    lines += ["MLflow serves with 1 worker, as in the issue's measurement; trainship's "
              "service uses its default, one worker process per core. What makes the "
              "difference: no ASGI stack per request, micro-batching of concurrent requests "
              "(at 16 connections each predict call serves many requests), a request that "
              "comes alone predicted in its own thread, and workers serving with one warning "
              "filter that does what a bare interpreter's do (scikit-learn re-applies every "
              "filter for every tree at every predict)."]
    lines += ["", "Where the time goes (py-spy, GIL-holding samples of a worker at 16 "
                  "connections): the model's predict is 75-85% of them, mostly "
                  "scikit-learn's per-tree Python overhead (about as much for 1 row as for "
                  "16); MLflow's parsing, HTTP and metrics a few % each. So req/s at 16 "
                  "connections is set by how many requests share a predict call. A batch "
                  "waits (at most `--max-wait-ms`) for the requests on their way: those in "
                  "flight in the worker (from their first line to their answer) and the next "
                  "request of each connection answered in the last 2 ms, as a client under "
                  "steady load sends it; waiting only for requests being parsed split the 16 "
                  "clients into groups that alternated (about 3 requests per call with 2 "
                  "workers, 6 to 7 now). One worker would form batches twice as large "
                  "(about 13 of 16 requests) and spend about 40% less CPU per request, but "
                  "it has one core; on this 2-core box, which wrk shares, both give about "
                  "the same req/s, so the default stays one worker per core.", "",
              "What is left: p50 at 1 connection is the model's own 1-row predict (a few "
              "ms of scikit-learn's per-tree overhead) plus well under a millisecond of "
              "request path, against MLflow's predict (with the libraries' warning "
              "filters) plus its ASGI stack; cold start is importing scikit-learn (scipy), "
              "pandas and MLflow (MLflow's own package imports its tracking, GenAI and "
              "FastAPI modules), which the service needs before it may answer /ping. The "
              "service starts with Python's cyclic garbage collector off and freezes what "
              "the start-up made before its workers fork (full collections during the "
              "imports took about a second of it on this box)."]
    lines += ["", f"`token_rps_frac={token_x:.2f}`: `trainship+token` is the same service "
                  "with a model token (`auth: token`, the default on AWS): every request "
                  "carries `Authorization: Bearer`, which the service checks against the "
                  "digest in its auth file. `token_rps_frac` is its "
                  "req/s over the plain service's at 16 connections, 1 row."]
    lines += ["", "trainship's cold start uses the load cache its image build writes (the "
                  "model loaded once and pickled in the Dockerfile's builder stage); the bench "
                  "writes it the same way before starting the server. Without it the first "
                  "start loads the model with MLflow's loader, like `mlflow models serve`."]
    lines += ["", "## Image size", ""]
    if "mlflow" in sizes:
        mb = {k: int(sizes[k]) / 1e6 for k in ("trainship", "mlflow", "base_size")}
        lines += [
            "Both images built with podman on the same base, the Debian bookworm image "
            f"made with debootstrap ({mb['base_size']:.0f} MB), for the reference model. "
            "MLflow's is the Dockerfile `mlflow models generate-dockerfile --env-manager "
            f"local` writes, with its `{sizes['mlflow_from']}` replaced by that base plus a "
            "venv giving it `python` and `pip` (what a python:slim image has).",
            "",
            "| image | size (MB) | on top of the base (MB) |", "|---|---|---|",
            f"| trainship | {mb['trainship']:.0f} | {mb['trainship'] - mb['base_size']:.0f} |",
            f"| mlflow generate-dockerfile | {mb['mlflow']:.0f} | "
            f"{mb['mlflow'] - mb['base_size']:.0f} |",
            "", f"trainship / MLflow: **{mb['trainship'] / mb['mlflow']:.2f}**",
        ]
    else:
        lines += [sizes.get("note", "not measured (`--skip-images`)")]
    lines += rebuild_lines(rebuild) + pipeline_lines(pipeline)
    lines += ["", "Rerun: `make bench` (installs wrk from Debian when missing; building the "
                  "MLflow-generated image needs network access for its apt and pip steps).",
              ""]
    out.write_text("\n".join(lines) + ("\n" + kept if kept else ""))


def hand_written(out: Path) -> str:
    """The report's hand-written part (from ``HAND_WRITTEN`` on), kept as it is."""
    text = out.read_text() if out.exists() else ""
    start = text.find(HAND_WRITTEN)
    return text[start:] if start >= 0 else ""


def image_rebuild(model: Path, work: Path) -> Rebuild | None:
    """A new version of the model (retrained, same requirements) built and pushed after
    the first, in the podman home image_sizes uses (bench/image_bench.py)."""
    from trainship import containers

    if containers.missing_tools():
        return None
    second = work / "model-v2"
    train_reference_model(second, seed=43)
    print("building the model's image, then a new version's (podman, local registry) ...",
          flush=True)
    home = work / "home"
    try:
        result = measure_rebuild(model, second, home, work)
    finally:
        containers.stop_registry(home)
    print(f"  {result}", flush=True)
    return result


def rebuild_lines(rebuild: Rebuild | None) -> list[str]:
    lines = ["", "## Image rebuild: a new version of a model", ""]
    if rebuild is None:
        return [*lines, "not measured (`--skip-images`, or no container tools)"]
    return [*lines,
            "The model's image built with podman and pushed to a local registry, then a new "
            "version of it (retrained, same requirements) built and pushed the same way, on "
            "the layers the first build left (on AWS: the registry cache of its dependency "
            "set, see below). `bench/image_bench.py`.", "",
            "| build | seconds |", "|---|---|",
            f"| the first (the venv built) | {rebuild.first_seconds:.0f} |",
            f"| a new version | {rebuild.next_seconds:.0f} |", "",
            f"The new version's image: {rebuild.layers} layers, {rebuild.image_mb:.0f} MB "
            f"compressed, of which **{rebuild.new_mb:.1f} MB** in {rebuild.new_layers} "
            "layers were not in the registry yet: what its push uploads and what a node "
            "that ran the previous version pulls."]


def pipeline_lines(pipeline: dict[str, Any] | None) -> list[str]:
    lines = ["", "## Time to URL: the local pipeline", ""]
    if pipeline is None:
        return [*lines, "not measured (`--skip-pipeline`)"]
    lines += [f"`bench/pipeline_bench.py`: the iris example deployed on a warm local stack "
              f"(process mode), {len(pipeline['runs'])} runs after a warm-up. The median run: "
              f"{pipeline['wall_s']:.1f} s from the POST to the first prediction, of which "
              f"the script itself ran {pipeline['script_s']:.1f} s: "
              f"**overhead_s={pipeline['overhead_s']:.2f}**.", "",
              "| state | seconds |", "|---|---|"]
    states = pipeline.get("states") or {}
    items = states.items() if isinstance(states, dict) else []
    lines += [f"| {name} | {float(seconds):.2f} |" for name, seconds in items]
    return lines


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
