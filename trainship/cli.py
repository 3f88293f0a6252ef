"""The ``trainship`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from trainship.client import ApiError, Client, default_home, resolve_api

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _print_error(doc: dict[str, Any]) -> None:
    print(f"error:   {doc.get('error')}", file=sys.stderr)
    if doc.get("step"):
        print(f"step:    {doc.get('step')}", file=sys.stderr)
    print(f"message: {doc.get('message')}", file=sys.stderr)
    if doc.get("details"):
        print("details:\n  " + str(doc["details"]).replace("\n", "\n  "), file=sys.stderr)
    if doc.get("help"):
        print(f"help:    {doc.get('help')}", file=sys.stderr)


def read_requirements(values: list[str] | None, files: list[str] | None) -> list[str]:
    reqs = list(values or [])
    for name in files or []:
        for line in Path(name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                reqs.append(line)
    return reqs


def wait_for(client: Client, deployment_id: str, *, progress: bool, poll: float = 1.0,
             timeout: float = 7800) -> dict[str, Any]:
    """Poll until the deployment ends; show each state as it is entered, with elapsed time.

    States of the rollout loop (WaitForRollout, CheckRollout, IsRolloutDone) repeat; each
    name is shown once.
    """
    started = time.monotonic()
    entered: set[str] = set()
    finished: set[str] = set()
    done = 0
    while True:
        record: dict[str, Any] = client.get(deployment_id)
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
        if record["status"] in TERMINAL:
            return record
        if time.monotonic() - started > timeout:
            raise SystemExit(f"gave up waiting for {deployment_id}")
        time.sleep(poll)


def cmd_deploy(args: argparse.Namespace) -> int:
    script = Path(args.script).read_text()
    body: dict[str, Any] = {"model_name": args.model_name, "script": script,
                            "requirements": read_requirements(args.requirements,
                                                              args.requirements_file)}
    for field, value in (("experiment_name", args.experiment_name),
                         ("timeout_seconds", args.timeout), ("replicas", args.replicas),
                         ("target", args.target)):
        if value is not None:
            body[field] = value
    client = Client(resolve_api(args.api))
    try:
        accepted = client.submit(body, idempotency_key=args.idempotency_key)
    except ApiError as exc:
        if args.output == "json":
            _print_json(exc.document)
        else:
            _print_error(exc.document)
        return 2
    deployment_id = accepted["deployment_id"]
    text = args.output != "json"
    if text:
        print(f"deployment {deployment_id} started", file=sys.stderr)
    if args.no_wait:
        _print_json(accepted) if not text else print(deployment_id)
        return 0
    record = wait_for(client, deployment_id, progress=text)
    return report(record, args.output)


def report(record: dict[str, Any], output: str) -> int:
    ok = record["status"] == "SUCCEEDED"
    if output == "json":
        _print_json(record.get("result") if ok else {"status": record["status"],
                                                      "deployment_id": record["deployment_id"],
                                                      **(record.get("error") or {})})
        return 0 if ok else 1
    if ok:
        result = record["result"]
        for key in ("status", "deployment_id", "inference_url", "model_name", "model_version",
                    "image_uri", "deployment_time_seconds"):
            print(f"{key + ':':26} {result.get(key)}")
        print(f"{'try:':26} curl -s -H 'Content-Type: application/json' "
              f"-d '{{\"inputs\": [[...]]}}' {result['inference_url']}/invocations")
        return 0
    print(f"status:  {record['status']}  ({record['deployment_id']})", file=sys.stderr)
    _print_error(record.get("error") or {})
    return 1


def cmd_status(args: argparse.Namespace) -> int:
    client = Client(resolve_api(args.api, start=False))
    try:
        record = client.get(args.deployment_id)
    except ApiError as exc:
        _print_error(exc.document)
        return 2
    if args.output == "json":
        _print_json(record)
        return 0
    print(f"deployment {record['deployment_id']}: {record['status']}")
    for step in record.get("steps", []):
        seconds = step.get("seconds")
        print(f"  {step['name']:18} {step['status']:10} "
              f"{'' if seconds is None else f'{seconds}s'}")
    if record.get("result"):
        print(f"inference_url: {record['result']['inference_url']}")
    if record.get("error"):
        _print_error(record["error"])
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    items = Client(resolve_api(args.api, start=False)).list()
    if args.output == "json":
        _print_json(items)
        return 0
    for item in items:
        print(f"{item['deployment_id']:26} {item['status']:10} {item.get('started_at')}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    client = Client(resolve_api(args.api, start=False))
    try:
        sys.stdout.write(client.logs(args.deployment_id))
    except ApiError as exc:
        _print_error(exc.document)
        return 2
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    from trainship.local import stack

    home = Path(args.home) if args.home else default_home()
    if args.action == "up":
        info = stack.up(home)
        print(f"API: {info['api']}")
        print(f"MLflow UI: {info['mlflow']}")
        print(f"Step Functions: {info['stepfunctions']}")
        print(f"State machine: {info['state_machine_arn']}")
        print(f"Targets: {info.get('targets', 'process')}"
              + (f" (image registry {info['registry']})" if info.get("registry") else ""))
        return 0
    if args.action == "down":
        print("local stack stopped" if stack.down(home) else "local stack was not running")
        return 0
    running = stack.read_info(home)
    if running is None:
        print("local stack: not running")
        return 1
    print(f"API: {running['api']}\nMLflow UI: {running['mlflow']}\n"
          f"Step Functions: {running['stepfunctions']}")
    return 0


def cmd_manifests(args: argparse.Namespace) -> int:
    from trainship.cluster.manifests import WorkloadSpec, render, to_yaml

    version = args.version or args.image.partition("@")[0].rpartition("-v")[2] or "1"
    try:
        objects = render(WorkloadSpec(
            model_name=args.model_name, version=version, image_uri=args.image,
            deployment_id=args.deployment_id, replicas=args.replicas, cpu=args.cpu,
            memory=args.memory, namespace=args.namespace, service_type=args.service_type,
            max_replicas=args.max_replicas, workers=args.workers))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output == "json":
        _print_json(objects)
    else:
        sys.stdout.write(to_yaml(objects))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the account for what a first deployment needs (trainship.doctor)."""
    from trainship import doctor

    try:
        import boto3
        from botocore.exceptions import BotoCoreError, NoCredentialsError
    except ImportError:
        print(f"trainship doctor needs boto3: pip install '{doctor.AWS_EXTRA}'", file=sys.stderr)
        return 2
    session = boto3.session.Session(region_name=args.region)
    region = session.region_name
    if not region:
        print("trainship doctor: no AWS region: pass --region or set AWS_REGION",
              file=sys.stderr)
        return 2
    cache: dict[tuple[str, str], Any] = {}

    def clients(service: str, where: str) -> Any:
        if (service, where) not in cache:
            cache[service, where] = session.client(service, region_name=where)
        return cache[service, where]

    kube = doctor.EksKube(session)
    try:
        report = doctor.run(args.stack, region, clients, kube, cluster_name=args.cluster or "",
                            namespace=args.namespace or "")
    except NoCredentialsError:
        print("trainship doctor: no AWS credentials found (aws configure, AWS_PROFILE, ...)",
              file=sys.stderr)
        return 2
    except BotoCoreError as exc:
        print(f"trainship doctor: {exc}", file=sys.stderr)
        return 2
    finally:
        kube.close()
    if args.output == "json":
        _print_json(report.to_dict())
    else:
        sys.stdout.write(doctor.format_text(report))
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainship", description=(
        "POST a training script, get back a live inference URL."))
    sub = parser.add_subparsers(dest="command", required=True)

    deploy = sub.add_parser("deploy", help="train, register, build and deploy a script")
    deploy.add_argument("script")
    deploy.add_argument("--model-name", required=True)
    deploy.add_argument("--requirements", nargs="*", help="PEP 508 requirements")
    deploy.add_argument("--requirements-file", action="append", help="a requirements.txt")
    deploy.add_argument("--experiment-name")
    deploy.add_argument("--timeout", type=int, help="script timeout in seconds")
    deploy.add_argument("--replicas", type=int)
    deploy.add_argument("--idempotency-key")
    deploy.add_argument("--target", choices=("process", "podman", "kubernetes"),
                        help="where to serve: process (local default), podman (build the "
                             "image, push it to the local registry, play the Deployment), "
                             "kubernetes")
    deploy.add_argument("--no-wait", action="store_true", help="print the id and return")
    deploy.set_defaults(func=cmd_deploy)

    status = sub.add_parser("status", help="one deployment's status, steps and result")
    status.add_argument("deployment_id")
    status.set_defaults(func=cmd_status)
    listing = sub.add_parser("list", help="recent deployments")
    listing.set_defaults(func=cmd_list)
    logs = sub.add_parser("logs", help="a deployment's build logs")
    logs.add_argument("deployment_id")
    logs.set_defaults(func=cmd_logs)
    for p in (deploy, status, listing, logs):
        p.add_argument("--api", help="API base URL (default: $TRAINSHIP_API or the local "
                                     "stack)")
        p.add_argument("--output", choices=("text", "json"), default="text")

    manifests = sub.add_parser("manifests", help="print the Kubernetes objects DeployModel "
                                                 "applies for a model image")
    manifests.add_argument("model_name")
    manifests.add_argument("--image", required=True, help="the image, ideally by digest")
    manifests.add_argument("--version", help="model version (default: from the image tag "
                                             "<model>-v<version>)")
    manifests.add_argument("--replicas", type=int, default=1)
    manifests.add_argument("--namespace", default="trainship")
    manifests.add_argument("--service-type", default="LoadBalancer",
                           choices=("LoadBalancer", "ClusterIP", "NodePort"))
    manifests.add_argument("--max-replicas", type=int, default=0,
                           help="add a HorizontalPodAutoscaler up to this many replicas")
    manifests.add_argument("--cpu", default="500m")
    manifests.add_argument("--memory", default="1Gi")
    manifests.add_argument("--workers", type=int, default=1,
                           help="inference worker processes per pod")
    manifests.add_argument("--deployment-id", default="")
    manifests.add_argument("--output", choices=("yaml", "json"), default="yaml")
    manifests.set_defaults(func=cmd_manifests)

    doctor = sub.add_parser("doctor", help="check the AWS account for what a first deployment "
                                           "needs (reads the stack's outputs)")
    doctor.add_argument("--stack", default="Trainship", help="stack name (default Trainship)")
    doctor.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    doctor.add_argument("--cluster", help="EKS cluster name (default: the stack's "
                                          "EksClusterName output; works before cdk deploy)")
    doctor.add_argument("--namespace", help="namespace (default: the stack's EksNamespace)")
    doctor.add_argument("--output", choices=("text", "json"), default="text")
    doctor.set_defaults(func=cmd_doctor)

    local = sub.add_parser("local", help="the local stack")
    local.add_argument("action", choices=("up", "down", "status"))
    local.add_argument("--home", help="state directory (default .trainship)")
    local.set_defaults(func=cmd_local)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
