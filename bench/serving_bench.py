"""`make bench`: trainship's inference service against `mlflow models serve`.

Same model (RandomForestClassifier, 100 trees, make_classification 1000 x 20), same box,
same load generator (wrk), measured in the same run:
  * 1 and 16 connections, 1-row and 100-row requests, 10 s each;
  * cold start: process start to the first /ping 200;
  * a soak of trainship's service: 64 connections for 60 s, which must have 0 errors.
Writes docs/benchmarks.md; the last line printed is
  serving rps_x=<a> p99_x=<b> p50_1conn_x=<c> coldstart_x=<d>
where each figure is how many times better trainship is (rps: ours / MLflow's at 16
connections, 1 row; the others MLflow's / ours).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BENCH_BODY"), "r"):read("*a")
"""


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_reference_model(target: Path) -> None:
    import mlflow.sklearn
    import skops.io
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(n_samples=1000, n_features=20, random_state=42)
    model = RandomForestClassifier(n_estimators=100, random_state=42).fit(x, y)
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    mlflow.sklearn.save_model(model, str(target), skops_trusted_types=trusted,
                              input_example=x[:2])


def start(cmd: list[str], port: int, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    started = time.perf_counter()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)
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


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--soak-seconds", type=int, default=60)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
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
    python = sys.executable
    servers = {
        "mlflow": lambda port: [python, "-m", "mlflow", "models", "serve", "-m", str(model),
                                "-h", "127.0.0.1", "-p", str(port), "--env-manager", "local",
                                "-w", "1"],
        "trainship": lambda port: [python, "-m", "trainship.serving", "--model-dir",
                                   str(model), "--host", "127.0.0.1", "--port", str(port)],
    }
    results: dict[str, dict[str, Load]] = {}
    coldstart: dict[str, float] = {}
    soak: Load | None = None
    for name, cmd in servers.items():
        port = free_port()
        proc, cold = start(cmd(port), port, work / f"{name}.log")
        coldstart[name] = cold
        print(f"{name}: first /ping after {cold:.2f} s", flush=True)
        try:
            wrk(port, bodies[1], 4, 2, lua)  # warm-up
            results[name] = {}
            for connections in (1, 16):
                for rows in (1, 100):
                    load = wrk(port, bodies[rows], connections, args.seconds, lua)
                    results[name][f"{connections}c/{rows}r"] = load
                    print(f"  {name:9} {connections:2} conn {rows:3} rows: {load.rps:8.1f} req/s"
                          f"  p50 {load.p50_ms:7.2f} ms  p99 {load.p99_ms:8.2f} ms"
                          f"  errors {load.errors}", flush=True)
            if name == "trainship" and args.soak_seconds:
                soak = wrk(port, bodies[1], 64, args.soak_seconds, lua)
                print(f"  soak: 64 conn {args.soak_seconds} s: {soak.requests} requests, "
                      f"{soak.rps:.1f} req/s, p99 {soak.p99_ms:.1f} ms, errors {soak.errors}",
                      flush=True)
        finally:
            stop(proc)
    ours, theirs = results["trainship"], results["mlflow"]
    rps_x = ours["16c/1r"].rps / theirs["16c/1r"].rps
    p99_x = theirs["16c/1r"].p99_ms / ours["16c/1r"].p99_ms
    p50_x = theirs["1c/1r"].p50_ms / ours["1c/1r"].p50_ms
    cold_x = coldstart["mlflow"] / coldstart["trainship"]
    write_report(args.out, results, coldstart, soak, args)
    shutil.rmtree(work, ignore_errors=True)
    print(f"report: {args.out}")
    print(f"serving rps_x={rps_x:.2f} p99_x={p99_x:.2f} p50_1conn_x={p50_x:.2f} "
          f"coldstart_x={cold_x:.2f}")
    return 0 if soak is None or soak.errors == 0 else 1


def write_report(out: Path, results: dict[str, dict[str, Load]], coldstart: dict[str, float],
                 soak: Load | None, args: argparse.Namespace) -> None:
    lines = [
        "# Benchmarks: serving",
        "",
        "trainship's inference service against `mlflow models serve` (1 worker, "
        "`--env-manager local`) on the same model and box, measured in the same run by "
        "`make bench` (`bench/serving_bench.py`). Model: RandomForestClassifier, 100 trees, "
        "make_classification 1000 x 20. Load: wrk, "
        f"{args.seconds} s per cell, JSON `inputs` bodies.",
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
    lines += ["", "Rerun: `make bench` (installs wrk from Debian when missing). "
                  "Image sizes are not compared yet: the container image is built in container "
                  "mode, which is not part of this benchmark yet.", ""]
    out.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
