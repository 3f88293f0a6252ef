"""Runtime settings read from the environment.

The same handlers run on AWS and on the local stack; what differs (where scripts are
staged, which MLflow, which cluster driver) is configuration injected here, never an
``if local:`` branch in a handler.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """A boolean variable: 1/true/yes/on (any case) are true; unset, empty, 0/false/no/off
    are false; anything else is a ValueError naming the variable."""
    value = (os.environ if environ is None else environ).get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean: use 1/true/yes/on or "
                     "0/false/no/off (or leave it unset)")


# the rollout strategies (trainship.request.STRATEGIES, which this bottom layer cannot import;
# tests/unit/test_canary_steps.py checks they are the same)
ROLLOUTS = ("canary", "all-at-once")


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class Settings:
    staging_uri: str
    tracking_uri: str
    cluster: str
    model_alias: str
    rollout_timeout_seconds: int
    rollout_poll_seconds: int
    state_machine_arn: str
    archive_dir: str
    home: Path
    targets: tuple[str, ...] = ()
    # a new model's auth when its request has none (TRAINSHIP_DEFAULT_AUTH): "token" on AWS
    # (CDK context trainship:defaultAuth), "none" on the local stack
    default_auth: str = "none"
    # how a new version of a model that already serves goes live when its request names no
    # rollout (TRAINSHIP_DEFAULT_ROLLOUT, CDK context trainship:defaultRollout): "canary"
    # (trainship.canary's default policy) or "all-at-once"
    default_rollout: str = "canary"
    # how long CheckRollout watches a version that is not ready yet before it answers
    # (TRAINSHIP_ROLLOUT_WATCH_SECONDS): 0 on AWS (one look; WaitForRollout paces the
    # loop), 1 on the local stack, whose WaitForRollout waits 0 s
    rollout_watch_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.default_auth not in ("token", "none"):
            raise ValueError(f"TRAINSHIP_DEFAULT_AUTH={self.default_auth!r}: use token or none")
        if self.default_rollout not in ROLLOUTS:
            raise ValueError(f"TRAINSHIP_DEFAULT_ROLLOUT={self.default_rollout!r}: use canary "
                             "or all-at-once")

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("TRAINSHIP_HOME", ".trainship")).resolve()
        return cls(
            staging_uri=os.environ.get("TRAINSHIP_STAGING_URI", str(home / "staging")),
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
            cluster=os.environ.get("TRAINSHIP_CLUSTER", "process"),
            model_alias=os.environ.get("TRAINSHIP_MODEL_ALIAS", "live"),
            rollout_timeout_seconds=_int("TRAINSHIP_ROLLOUT_TIMEOUT_SECONDS", 600),
            rollout_poll_seconds=_int("TRAINSHIP_ROLLOUT_POLL_SECONDS", 10),
            state_machine_arn=os.environ.get("STATE_MACHINE_ARN", ""),
            archive_dir=os.environ.get("TRAINSHIP_ARCHIVE_DIR", ""),
            home=home,
            targets=tuple(t for t in os.environ.get("TRAINSHIP_TARGETS", "").split(",") if t)
            or (os.environ.get("TRAINSHIP_CLUSTER", "process"),),
            default_auth=os.environ.get("TRAINSHIP_DEFAULT_AUTH", "").strip().lower() or "none",
            default_rollout=os.environ.get("TRAINSHIP_DEFAULT_ROLLOUT", "").strip().lower()
            or "canary",
            rollout_watch_seconds=float(os.environ.get("TRAINSHIP_ROLLOUT_WATCH_SECONDS")
                                        or 0),
        )

    def driver_name(self, target: str) -> str:
        """The cluster driver of a deployment: its target, or this stack's default."""
        return target or self.cluster


# --- CLI ---

@dataclass(frozen=True)
class CliSettings:
    """What the ``trainship`` command line (and ``make demo``) reads from the environment."""

    api: str  # TRAINSHIP_API: the API's base URL; empty: the local stack
    debug: bool  # TRAINSHIP_DEBUG: an internal error shows its traceback
    home: Path  # TRAINSHIP_HOME: the local stack's state directory (as given, not resolved)

    @classmethod
    def from_env(cls) -> CliSettings:
        return cls(api=os.environ.get("TRAINSHIP_API", ""), debug=env_flag("TRAINSHIP_DEBUG"),
                   home=Path(os.environ.get("TRAINSHIP_HOME", ".trainship")))


# --- cluster drivers ---

def source_ranges(text: str) -> list[str]:
    """``TRAINSHIP_LB_SOURCE_RANGES``: a comma list of CIDR blocks; empty means none."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _optional_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def _optional_float(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


@dataclass(frozen=True)
class ServingOptions:
    """How a driver starts the inference service of a version (``--workers``,
    ``--max-batch-rows``, ``--max-wait-ms``); None: the service's own default."""

    workers: int = 1
    max_batch_rows: int | None = None
    max_wait_ms: float | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"TRAINSHIP_SERVING_WORKERS={self.workers}: give 1 or more")
        if self.max_batch_rows is not None and self.max_batch_rows < 1:
            raise ValueError(f"TRAINSHIP_MAX_BATCH_ROWS={self.max_batch_rows}: give 1 or more")
        if self.max_wait_ms is not None and self.max_wait_ms < 0:
            raise ValueError(f"TRAINSHIP_MAX_WAIT_MS={self.max_wait_ms}: give 0 or more")


@dataclass(frozen=True)
class ClusterSettings:
    """What the cluster drivers read from the environment, read once where the driver is
    built (trainship.cluster.drivers). The defaults are the drivers' defaults."""

    namespace: str = "trainship"
    service_type: str = "LoadBalancer"
    lb_scheme: str = "internet-facing"
    lb_source_ranges: tuple[str, ...] = ()
    # TRAINSHIP_LB_CERTIFICATE_ARN (CDK context trainship:certificateArn): HTTPS on the
    # load balancer with this ACM certificate; "" = plain HTTP
    lb_certificate_arn: str = ""
    arch: str = "amd64"
    eks_cluster: str = ""
    kube_context: str = ""
    region: str = ""
    serving: ServingOptions = ServingOptions()

    @classmethod
    def from_env(cls) -> ClusterSettings:
        env = os.environ.get
        return cls(
            namespace=env("TRAINSHIP_NAMESPACE") or cls.namespace,
            service_type=env("TRAINSHIP_SERVICE_TYPE") or cls.service_type,
            lb_scheme=env("TRAINSHIP_LB_SCHEME") or cls.lb_scheme,
            lb_source_ranges=tuple(source_ranges(env("TRAINSHIP_LB_SOURCE_RANGES", ""))),
            lb_certificate_arn=env("TRAINSHIP_LB_CERTIFICATE_ARN", "").strip(),
            arch=env("TRAINSHIP_CLUSTER_ARCH") or cls.arch,
            eks_cluster=env("TRAINSHIP_EKS_CLUSTER", ""),
            kube_context=env("TRAINSHIP_KUBE_CONTEXT", ""),
            region=env("AWS_REGION") or env("AWS_DEFAULT_REGION", ""),
            serving=ServingOptions(
                workers=_int("TRAINSHIP_SERVING_WORKERS", 1),
                max_batch_rows=_optional_int("TRAINSHIP_MAX_BATCH_ROWS"),
                max_wait_ms=_optional_float("TRAINSHIP_MAX_WAIT_MS")))
# --- training runner ---
# The variables the training runner (trainship.training, run by buildspecs/train.yml) reads
# for the script's own session (trainship.script_access re-exports the names).
SCRIPT_ROLE_ENV = "TRAINSHIP_SCRIPT_ROLE_ARN"
# The tracking server ARN when the tracking URI is not one (the local stack's gate).
TRACKING_SERVER_ARN_ENV = "TRAINSHIP_MLFLOW_TRACKING_SERVER_ARN"
# Proxied artifacts (an MLflow server with --artifacts-destination): mlflow-artifacts:
# URIs name objects in this bucket (the local stack sets it; on AWS the artifact
# locations of a managed server are s3:// URIs).
PROXIED_ARTIFACTS_BUCKET_ENV = "TRAINSHIP_MLFLOW_PROXIED_ARTIFACTS_BUCKET"
KMS_KEY_ENV = "TRAINSHIP_MLFLOW_ARTIFACT_KMS_KEY_ARN"


@dataclass(frozen=True)
class TrainingSettings:
    """What ``python -m trainship.training`` reads from its environment, read once in
    ``main`` (docs/environment.md has a row for each variable)."""

    tracking_uri: str  # MLFLOW_TRACKING_URI
    run_id: str  # MLFLOW_RUN_ID: set by train.yml for ``run`` (from ``create-run``)
    workdir: Path  # where train.py is written and run
    env_cache: Path  # one venv per hash of the requirements
    script_role_arn: str = ""  # empty: the script runs without AWS credentials
    tracking_server_arn: str = ""
    proxied_artifacts_bucket: str | None = None
    kms_key_arn: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrainingSettings:
        env = os.environ if environ is None else environ
        return cls(
            tracking_uri=env.get("MLFLOW_TRACKING_URI", ""),
            run_id=env.get("MLFLOW_RUN_ID", ""),
            workdir=Path(env.get("TRAINSHIP_WORKDIR") or "work").resolve(),
            env_cache=Path(env.get("TRAINSHIP_ENV_CACHE")
                           or Path.home() / ".cache" / "trainship" / "envs"),
            script_role_arn=env.get(SCRIPT_ROLE_ENV, ""),
            tracking_server_arn=env.get(TRACKING_SERVER_ARN_ENV, ""),
            proxied_artifacts_bucket=env.get(PROXIED_ARTIFACTS_BUCKET_ENV) or None,
            kms_key_arn=env.get(KMS_KEY_ENV) or None,
        )


# --- inference service ---
# ServingSettings is trainship/serving/settings.py: the model image ships the serving
# package alone, which imports no other trainship module (pyproject's import contract).


# --- image entry point ---
DEFAULT_BASE_IMAGE = "public.ecr.aws/docker/library/python:3.11-slim-bookworm"


@dataclass(frozen=True)
class ImageSettings:
    """What ``python -m trainship.image`` reads from its environment (buildspecs/image.yml,
    the CodeBuild project's variables or the local stack's), once, in ``main``."""

    tracking_uri: str = ""
    # the builder per deployment target (TRAINSHIP_IMAGE_BUILDERS: ``target=builder,...``)
    builders: tuple[tuple[str, str], ...] = ()
    default_builder: str = "bundle"
    registry: Path = Path("registry")  # the bundle builder's registry directory
    image_repository: str = "local"  # podman/docker: where the image is pushed
    base_image: str = DEFAULT_BASE_IMAGE
    cluster_arch: str = "amd64"
    wheels: str = ""  # "host": the model's wheels downloaded outside the build
    buildkit_image: str = ""  # docker: the buildx builder's BuildKit image (moby/buildkit)
    home: Path = Path(".trainship")

    @classmethod
    def from_env(cls) -> ImageSettings:
        env = os.environ
        return cls(
            tracking_uri=env.get("MLFLOW_TRACKING_URI", ""),
            builders=tuple((target, builder) for target, equals, builder in
                           (item.partition("=") for item in
                            env.get("TRAINSHIP_IMAGE_BUILDERS", "").split(",")) if equals),
            default_builder=env.get("TRAINSHIP_IMAGE_BUILDER", "bundle"),
            registry=Path(env.get("TRAINSHIP_REGISTRY", "registry")),
            image_repository=env.get("TRAINSHIP_IMAGE_REPOSITORY", "local"),
            base_image=env.get("TRAINSHIP_BASE_IMAGE", DEFAULT_BASE_IMAGE),
            cluster_arch=env.get("TRAINSHIP_CLUSTER_ARCH", "") or "amd64",
            wheels=env.get("TRAINSHIP_IMAGE_WHEELS", ""),
            buildkit_image=env.get("TRAINSHIP_BUILDKIT_IMAGE", ""),
            home=Path(env.get("TRAINSHIP_HOME", ".trainship")),
        )

    def builder_for(self, target: str) -> str:
        """The image builder of a deployment's target, or the default builder."""
        return dict(self.builders).get(target) or self.default_builder
