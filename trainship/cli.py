"""The ``trainship`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from trainship import (
    auth,
    cli_delete,
    cli_models,
    cli_open,
    cli_predict,
    cli_rollback,
    cli_token,
    doctor,
    doctor_eks,
)
from trainship.cli_canary import progress_lines, result_lines
from trainship.cli_common import add_api_options, follow, resolve_api, start_and_follow
from trainship.cli_request import request_body
from trainship.cli_rollout import add_rollout_options
from trainship.client import (
    ApiError,
    ApiUnavailable,
    Client,
    ClientSetupError,
    InvalidApiUrl,
)
from trainship.cluster.manifests import WorkloadSpec, auth_secret, render, to_yaml
from trainship.config import CliSettings
from trainship.terminal import (
    EXIT_BROKEN_PIPE,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    print_cost,
    print_error,
    print_json,
    refused,
    say,
)


def cmd_deploy(args: argparse.Namespace, settings: CliSettings) -> int:
    body = request_body(args, "script")
    client = Client(resolve_api(args.api, settings))
    return start_and_follow(
        client, lambda: client.submit(body, idempotency_key=args.idempotency_key), args,
        what="deployment")


def cmd_redrive(args: argparse.Namespace, settings: CliSettings) -> int:
    """Resume a failed deployment from the step that failed, then follow it like deploy."""
    client = Client(resolve_api(args.api, settings, start=False))
    try:
        record = client.redrive(args.deployment_id)
    except ApiError as exc:
        return refused(exc, args.output)
    text = args.output != "json"
    if text:
        print(f"deployment {record['deployment_id']} redriven from {record.get('current_step')}",
              file=sys.stderr, flush=True)
    if args.no_wait:
        print_json(record) if not text else print(record["deployment_id"])
        return EXIT_OK
    return follow(client, record["deployment_id"], args)


def cmd_request(args: argparse.Namespace, settings: CliSettings) -> int:
    """Print the POST body, as the original ``encode_script.py --deploy`` did."""
    print_json(request_body(args, "script_content"))
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: CliSettings) -> int:
    client = Client(resolve_api(args.api, settings, start=False))
    try:
        record = client.get(args.deployment_id)
    except ApiError as exc:
        return refused(exc)
    if args.output == "json":
        print_json(record)
        return EXIT_OK
    print(f"deployment {record['deployment_id']}: {record['status']}")
    for step in record.get("steps", []):
        seconds = step.get("seconds")
        print(f"  {step['name']:18} {step['status']:10} {'' if seconds is None else f'{seconds}s'}")
    # a canary under way (or cut short by another failure: CanaryFailed's details have it)
    error = record.get("error")
    if record.get("canary") and (error is None or error["error"] != "CanaryFailed"):
        for line in progress_lines(record["canary"]):
            print(line)
    if (record.get("result") or {}).get("inference_url"):  # a delete's result has none
        print(f"inference_url: {record['result']['inference_url']}")
    for line in result_lines(record.get("result") or {}):
        print(line)
    if record.get("error"):
        print_error(record["error"])
    if record.get("cost"):
        print_cost(record["cost"])
    return 0


def cmd_list(args: argparse.Namespace, settings: CliSettings) -> int:
    try:
        items = Client(resolve_api(args.api, settings, start=False)).list()
    except ApiError as exc:
        return refused(exc)
    if args.output == "json":
        print_json(items)
        return 0
    for item in items:
        print(f"{item['deployment_id']:26} {item['status']:10} {item.get('started_at')}")
    return 0


def cmd_logs(args: argparse.Namespace, settings: CliSettings) -> int:
    client = Client(resolve_api(args.api, settings, start=False))
    try:
        sys.stdout.write(client.logs(args.deployment_id))
    except ApiError as exc:
        return refused(exc)
    return EXIT_OK


def cmd_local(args: argparse.Namespace, settings: CliSettings) -> int:
    from trainship.local import stack

    home = Path(args.home) if args.home else settings.home
    if args.action == "up":
        try:
            info = stack.up(home)
        except (RuntimeError, TimeoutError, OSError) as exc:
            raise CliError(f"could not start the local stack: {exc}", EXIT_UNAVAILABLE) from None
        print(f"API: {info['api']}\nMLflow UI: {info['mlflow']}\n"
              f"Step Functions: {info['stepfunctions']}")
        if info.get("console"):
            print(f"Console: {info['console']}")
        print(f"State machine: {info['state_machine_arn']}")
        print(f"Targets: {info.get('targets', 'process')}"
              + (f" (image registry {info['registry']})" if info.get("registry") else ""))
        return 0
    if args.action == "down":
        print("local stack stopped" if stack.down(home) else "local stack was not running")
        return 0
    running = stack.read_info(home)
    if running is None:
        pid = stack.holder(home)
        if pid is None:
            print("local stack: not running")
            return EXIT_FAILED
        print(f"local stack: running (daemon pid {pid}), still starting")
        return 0
    print(f"API: {running['api']}\nMLflow UI: {running['mlflow']}\n"
          f"Step Functions: {running['stepfunctions']}")
    if running.get("console"):
        print(f"Console: {running['console']}")
    return 0


def cmd_manifests(args: argparse.Namespace, settings: CliSettings) -> int:
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
    # the Deployment mounts the model's auth Secret (<serving name>-auth): first, since a
    # pod waits in ContainerCreating until it exists
    if args.auth == "token":
        token = auth.new_token()
        text = auth.render(auth.with_token(auth.AuthFile(), auth.digest(token), pending=False))
        print(f"inference token (shown once; the Secret holds its sha256 only): {token}",
              file=sys.stderr)
    else:
        text = auth.render(auth.open_file())
    objects = [auth_secret(args.model_name, args.namespace, text), *objects]
    if args.output == "json":
        print_json(objects)
    else:
        sys.stdout.write(to_yaml(objects))
    return 0


def cmd_doctor(args: argparse.Namespace, settings: CliSettings) -> int:
    """Check the account for what a first deployment needs (trainship.doctor)."""
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

    kube = doctor_eks.EksKube(session)
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
        print_json(report.to_dict())
    else:
        sys.stdout.write(doctor.format_text(report))
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainship", description="POST a training script, get back a live inference URL.",
        epilog="exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items()))
    sub = parser.add_subparsers(dest="command", required=True)

    deploy = sub.add_parser("deploy", help="train, register, build and deploy a script")
    request = sub.add_parser(
        "request", help="print the POST /deployments body for a script (script_content "
                        "base64, as the original encode_script.py --deploy); "
                        "`trainship request train.py --model-name m > request.json`")
    for p in (deploy, request):
        p.add_argument("script", help="the training script")
        p.add_argument("--model-name", required=True,
                       help="the MLflow registered-model name")
        p.add_argument("--requirements", nargs="*", help="PEP 508 requirements")
        p.add_argument("--requirements-file", action="append", help="a requirements.txt")
        p.add_argument("--experiment-name", help="MLflow experiment (default: the model name)")
        p.add_argument("--timeout", type=int, help="script timeout in seconds")
        p.add_argument("--replicas", type=int)
        p.add_argument("--target", choices=("process", "podman", "kubernetes"),
                       help="where to serve: process (local default), podman (build the "
                            "image, push it to the local registry, play the Deployment), "
                            "kubernetes")
        p.add_argument("--debug", action="store_true",
                       help="the served model answers model errors with their traceback "
                            "(stack_trace); for debugging only")
        p.add_argument("--auth", choices=("token", "none"),
                       help="token: /invocations needs the model's token (printed once and "
                            "stored for `trainship predict`); none: anyone who reaches the "
                            "URL; default: the model's current auth, for a new model the "
                            "stack's (token on AWS, none locally)")
        add_rollout_options(p)
    deploy.add_argument("--idempotency-key")
    deploy.set_defaults(func=cmd_deploy)
    request.set_defaults(func=cmd_request)

    redrive = sub.add_parser("redrive", help="resume a failed deployment from the step that "
                                             "failed (same input; what succeeded, training "
                                             "among it, does not run again)")
    redrive.add_argument("deployment_id")
    redrive.set_defaults(func=cmd_redrive)

    status = sub.add_parser("status", help="one deployment's status, steps and result")
    status.add_argument("deployment_id")
    status.set_defaults(func=cmd_status)
    listing = sub.add_parser("list", help="recent deployments")
    listing.set_defaults(func=cmd_list)
    logs = sub.add_parser("logs", help="a deployment's build logs")
    logs.add_argument("deployment_id")
    logs.set_defaults(func=cmd_logs)
    for p in (deploy, redrive, status, listing, logs):
        add_api_options(p, no_wait=p in (deploy, redrive))

    cli_models.add_parser(sub)
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
    manifests.add_argument("--auth", choices=("none", "token"), default="none",
                           help="the auth Secret the Deployment mounts: none (the URL answers "
                                "anyone, the default here) or token (a new token, printed "
                                "on stderr once)")
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

    cli_rollback.add_parser(sub)

    local = sub.add_parser("local", help="the local stack")
    local.add_argument("action", choices=("up", "down", "status"))
    local.add_argument("--home", help="state directory (default .trainship)")
    local.set_defaults(func=cmd_local)
    cli_delete.add_parser(sub)
    cli_predict.add_parser(sub)
    cli_token.add_parser(sub)
    cli_open.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # bad arguments: usage and exit 2 (argparse)
    try:
        settings = CliSettings.from_env()
    except ValueError as exc:  # TRAINSHIP_DEBUG=maybe: named, like a bad argument
        say(str(exc))
        return EXIT_USAGE
    try:
        return int(args.func(args, settings))
    except CliError as exc:
        say(str(exc))
        return exc.code
    except ApiUnavailable as exc:
        hint = (": check that it runs (`trainship local up` starts the local stack) and that "
                "--api / TRAINSHIP_API points to it" if str(exc).startswith("cannot reach")
                else "")
        say(f"{exc}{hint}")
        return EXIT_UNAVAILABLE
    except ApiError as exc:
        try:
            return refused(exc)
        except CliError as failure:
            say(str(failure))
            return failure.code
    except (InvalidApiUrl, ClientSetupError) as exc:
        say(f"{exc}" if isinstance(exc, ClientSetupError) else
             f"--api / TRAINSHIP_API: {exc}; give the API's base URL, e.g. http://127.0.0.1:PORT")
        return EXIT_USAGE
    except KeyboardInterrupt:
        say("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`trainship logs ID | head`): no traceback at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # one line instead of a traceback
        if settings.debug:
            raise
        say(f"internal error: {type(exc).__name__}: {exc} (a bug in trainship: run again "
             "with TRAINSHIP_DEBUG=1 for the traceback and report it)")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
