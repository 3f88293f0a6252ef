"""The logic of each Lambda step: plain functions, typed in and out.

Handlers in lambdas/ parse the event and call one of these with the settings and
drivers; nothing here knows whether it runs on AWS or on the local stack.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from trainship import model_auth, registry, served, staging
from trainship.canary import Policy
from trainship.cluster import ClusterDriver, Unreachable
from trainship.cluster.manifests import WorkloadSpec
from trainship.config import Settings
from trainship.errors import (
    ErrorDocument,
    ImageBuildFailed,
    InternalError,
    InvalidRequest,
    RolloutFailed,
    TrainingBuildFailed,
    TrainshipError,
    TransientError,
    document_from_json,
    error_class,
)
from trainship.image_pins import ImagePins
from trainship.names import serving_name
from trainship.request import normalize, parse_request
from trainship.state import (
    AuthState,
    CanaryState,
    DeploymentResult,
    DeploymentState,
    FailedStep,
    RolloutState,
    SmokeTest,
)

LOG = logging.getLogger(__name__)


def stage_job(state: DeploymentState, settings: Settings) -> DeploymentState:
    """Stage the state as ``<staging>/<id>/job.json``, the job document the next build reads
    (its URI is the build's TRAINSHIP_JOB_URI override)."""
    state.job_uri = state.job_uri or staging.join(settings.staging_uri, state.deployment_id,
                                                  "job.json")
    staging.put_text(state.job_uri, json.dumps(state.out(), sort_keys=True))
    return state


def validate_request(body: Any, *, deployment_id: str, started_at: str,
                     settings: Settings) -> DeploymentState:
    request, script = parse_request(body, settings.targets)
    script_uri = staging.join(settings.staging_uri, deployment_id, "train.py")
    staging.put_text(script_uri, script)
    normalized = normalize(request, script, deployment_id=deployment_id, script_uri=script_uri,
                           started_at=started_at)
    return stage_job(DeploymentState.model_validate(normalized.model_dump()), settings)


def register_model(state: DeploymentState, *, settings: Settings) -> DeploymentState:
    assert state.training is not None
    run_id = state.training.variable("MLFLOW_RUN_ID") or ""
    state.model = registry.register(tracking_uri=settings.tracking_uri,
                                    deployment_id=state.deployment_id,
                                    model_name=state.model_name, run_id=run_id)
    return stage_job(state, settings)  # BuildImage reads the registered model from it


def canary_policy(state: DeploymentState, settings: Settings) -> Policy | None:
    """The canary's policy when the deployment asks for one (its request's ``rollout``,
    else the stack's ``default_rollout``); None: all at once. A rollback always goes all at
    once (the version it replaces may be what is broken)."""
    release = state.release
    strategy = release.strategy if release is not None else settings.default_rollout
    if strategy != "canary" or state.rollback is not None:
        return None
    if release is None:
        return Policy()
    try:
        return release.policy()
    except ValueError as exc:  # ValidateRequest checked it: a state edited since
        raise InvalidRequest("The request's rollout is not a canary policy",
                             details=f"rollout: {exc}", step="DeployModel") from exc


def deploy_model(state: DeploymentState, *, settings: Settings,
                 driver: ClusterDriver) -> DeploymentState:
    """Apply the new version. A canary (:func:`canary_policy`) runs it beside the live
    version without a share of the traffic, and sets ``$.canary`` for the canary loop
    (trainship.canary_steps) when there is a live version to share with; without one (a
    first deployment) it goes all at once. A redrive resuming here starts the canary over."""
    assert state.model is not None and state.image is not None
    image_uri = state.image.variable("IMAGE_URI") or ""
    if not image_uri:
        raise ImageBuildFailed("BuildImage exported no IMAGE_URI", step="DeployModel")
    policy = canary_policy(state, settings)
    deadline = time.time() + settings.rollout_timeout_seconds
    # the auth file first: the pods mount it (trainship.model_auth)
    state.model_auth = model_auth.prepare(driver, state.model_name, requested=state.auth,
                                          default=settings.default_auth, deadline=deadline,
                                          rollback=state.rollback is not None)
    try:
        applied = driver.apply(WorkloadSpec(
            model_name=state.model_name, version=state.model.version, image_uri=image_uri,
            deployment_id=state.deployment_id, replicas=state.replicas,
            cpu=state.resources.cpu, memory=state.resources.memory,
            progress_deadline_seconds=settings.rollout_timeout_seconds,
            requirements=state.requirements, debug=state.debug,
            replace_higher=state.rollback is not None, canary=policy is not None))
    except Exception:  # nothing applied: the model's auth as it was
        model_auth.restore(driver, state.model_name, state.model_auth)
        raise
    state.rollout = RolloutState(
        ready=False, poll_seconds=settings.rollout_poll_seconds, deadline=deadline,
        inference_url=applied.inference_url, test_url=applied.test_url, image_uri=image_uri,
        handle=applied.handle, live_version=applied.live_version,
        message="applied")
    live = applied.live_version
    state.canary = (CanaryState.start(policy, new_version=state.model.version, live_version=live)
                    if policy is not None and live and live != state.model.version else None)
    return state


WATCH_INTERVAL_SECONDS = 0.05


def check_rollout(state: DeploymentState, *, driver: ClusterDriver, now: float | None = None,
                  watch_seconds: float = 0.0,
                  sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic) -> DeploymentState:
    """Is the new version ready? With ``watch_seconds`` (the local stack's), a version that
    is not ready yet is looked at again every WATCH_INTERVAL_SECONDS for that long, so that
    the state machine learns it is ready within moments rather than at WaitForRollout's
    next pass; 0 (AWS): one look."""
    assert state.rollout is not None
    rollout = state.rollout
    status = driver.status(rollout.handle)
    until = clock() + watch_seconds
    while not status.ready and not status.failed and clock() < until:
        sleep(WATCH_INTERVAL_SECONDS)
        status = driver.status(rollout.handle)
    rollout.checks += 1
    rollout.message = status.message
    if status.inference_url:
        rollout.inference_url = status.inference_url
    if status.failed:
        raise RolloutFailed(f"{state.model_name} did not roll out: {status.message}",
                            details=status.details, step="CheckRollout")
    if not status.ready and (now or time.time()) > rollout.deadline:
        raise RolloutFailed(
            f"{state.model_name} was not ready before the rollout deadline: {status.message}",
            details=status.details, step="CheckRollout")
    rollout.ready = status.ready
    return state


SMOKE_MIN_SECONDS = 30.0  # a rollout ready just before its deadline still gets a fair try
SMOKE_RETRY_STATUSES = (502, 503, 504)
SMOKE_HELP = ("The new version answered its own input example with an error. The previous "
              "version keeps serving. details has the model's answer; check that the model "
              "accepts the input example it logged (mlflow.models.validate_serving_input).")


def smoke_test(state: DeploymentState, *, settings: Settings, driver: ClusterDriver,
               budget_seconds: float | None = None,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.time) -> DeploymentState:
    """POST the model's logged input example to the new version's /invocations (when it
    logged one), through the cluster driver: on Kubernetes the API server's pod proxy, so
    neither the load balancer's DNS nor cluster DNS is needed. Connection failures and
    502/503/504 are retried with backoff until the rollout deadline (or the end of
    ``budget_seconds``, the Lambda's remaining time: then TransientError, which the state
    machine retries); any other error status is the model's answer: RolloutFailed."""
    assert state.model is not None and state.rollout is not None
    example = registry.serving_input_example(state.model.name, state.model.version,
                                             settings.tracking_uri)
    rollout = state.rollout
    what = f"{state.model_name} v{state.model.version}"
    if example is None:  # the token check needs no example: the guard answers before the body
        if model_auth.guarded(driver, state.model_name, state.model_auth):
            _refuses_without_token(driver, rollout.handle, {}, what)
        state.smoke_test = SmokeTest(ran=False, message="the model has no input example")
        return state
    start = clock()
    until = max(rollout.deadline, start + SMOKE_MIN_SECONDS)
    stop = min(until, start + budget_seconds) if budget_seconds is not None else until
    delay, attempts, last = 1.0, 0, ""
    headers = model_auth.smoke_headers(state.model_auth)
    while True:
        attempts += 1
        try:
            answer = driver.invoke(rollout.handle, "/invocations", example,
                                   timeout=max(1.0, min(30.0, stop - clock())),
                                   headers=headers)
        except Unreachable as exc:
            last = str(exc)
        else:
            if answer is None:
                state.smoke_test = SmokeTest(ran=False, message=f"{what} is not served: a "
                                                                "higher version replaced it")
                return state
            if 200 <= answer.status < 300:
                if model_auth.guarded(driver, state.model_name, state.model_auth):
                    _refuses_without_token(driver, rollout.handle, example, what)
                state.smoke_test = SmokeTest(
                    ran=True, message=f"input example answered: {answer.body[:200]}")
                return state
            if answer.status not in SMOKE_RETRY_STATUSES:
                raise RolloutFailed(f"The smoke test got HTTP {answer.status} from {what}",
                                    details=answer.body[-4000:], step="SmokeTestModel",
                                    help=SMOKE_HELP)
            last = f"HTTP {answer.status}: {answer.body[:300]}"
        if clock() + delay > stop:
            break
        sleep(delay)
        delay = min(delay * 2, 15.0)
    if stop < until:
        raise TransientError(f"The smoke test could not reach {what} within this invocation "
                             f"({attempts} attempts); the state machine tries again",
                             details=last, step="SmokeTestModel")
    raise RolloutFailed(f"The smoke test could not reach {what} before the rollout deadline "
                        f"({attempts} attempts)", details=last, step="SmokeTestModel")


UNGUARDED_HELP = (
    "The model's URL has token auth, but the new version answered /invocations without a "
    "token: its image runs a trainship.serving from before token auth, which ignores the "
    "auth file (TRAINSHIP_SERVING_AUTH_FILE). It was not made live; the previous version "
    "keeps serving. Deploy a newly built version instead (a rollback to a version built "
    "before token auth cannot serve with a token), or serve the model openly with "
    "`--auth none` if you accept an open URL.")


def _refuses_without_token(driver: ClusterDriver, handle: Any, example: Any,
                           what: str) -> None:
    """In token mode (while the file guards the URL) the smoke test also POSTs the input
    example WITHOUT a token: a version that does not answer 401 does not enforce the
    model's auth (an image built before it) and must not go live reporting ``auth:
    token``. Unreachable: TransientError (the state machine runs the smoke test again)."""
    try:
        answer = driver.invoke(handle, "/invocations", example, timeout=30.0)
    except Unreachable as exc:
        raise TransientError(f"The smoke test's request without a token could not reach "
                             f"{what}; the state machine tries again", details=str(exc),
                             step="SmokeTestModel") from exc
    if answer is not None and answer.status != 401:
        raise RolloutFailed(f"{what} answered a request without a token with HTTP "
                            f"{answer.status}, not 401: it does not enforce the model's "
                            "token auth", details=answer.body[-4000:], step="SmokeTestModel",
                            help=UNGUARDED_HELP)


def _seconds_since(started_at: str, now: datetime | None = None) -> float:
    if not started_at:
        return 0.0
    start = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return round(((now or datetime.now(UTC)) - start).total_seconds(), 1)


def promote_model(state: DeploymentState, *, settings: Settings, driver: ClusterDriver,
                  pins: ImagePins) -> DeploymentState:
    """Make the new version live (unless a higher one already is; a rollback replaces it),
    pin its image and the one it replaced against expiry, then move the MLflow alias: a
    failed pin fails the deployment before the alias moves, and RecordFailure restores the
    previous version."""
    assert state.model is not None and state.rollout is not None
    rollback = state.rollback is not None
    with driver.lock(state.model_name):
        superseded_by = driver.promote(state.rollout.handle, replace_higher=rollback)
        if superseded_by is None:
            pins.pin(state.model_name, state.rollout.image_uri)
            if registry.promote(tracking_uri=settings.tracking_uri,
                                model_name=state.model_name, version=state.model.version,
                                alias=settings.model_alias, replace_higher=rollback):
                served.mark_live(registry.mlflow_client(settings.tracking_uri),
                                 model_name=state.model_name, version=state.model.version,
                                 image_uri=state.rollout.image_uri,
                                 inference_url=state.rollout.inference_url,
                                 target=settings.driver_name(state.target),
                                 deployment_id=state.deployment_id)
        mode, token = model_auth.deliver(driver, state.model_name, state.model_auth)
    url = state.rollout.inference_url
    state.result = DeploymentResult(
        deployment_id=state.deployment_id, inference_url=url,
        invocations_url=f"{url}/invocations", model_name=state.model_name,
        serving_name=state.serving_name or serving_name(state.model_name),
        model_version=state.model.version, model_uri=state.model.model_uri,
        run_id=state.model.run_id, image_uri=state.rollout.image_uri,
        alias=settings.model_alias if superseded_by is None else "",
        live=superseded_by is None, superseded_by=superseded_by,
        deployment_time_seconds=_seconds_since(state.started_at), auth=mode,
        inference_token=token, canary=state.canary.history if state.canary else None)
    return state


class FailureContext(BaseModel):
    """What RecordFailure needs of the state; the state may be partial (or a raw request)."""

    model_config = ConfigDict(extra="ignore")

    failure: dict[str, Any] = Field(default_factory=dict)
    failed_step: FailedStep | None = None
    script_uri: str = ""
    target: str = ""
    rollout: RolloutState | None = None
    result: DeploymentResult | None = None
    model_auth: AuthState | None = None

    @field_validator("rollout", mode="wrap")
    @classmethod
    def _readable_rollout(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """A rollout whose handle no driver can read (a partial or edited state) has
        nothing RecordFailure could undo: it must still return the error document."""
        try:
            return handler(value)
        except ValidationError:
            return None


def _build_step(build: dict[str, Any]) -> str | None:
    """The state that ran the build: the ASL passes it as the TRAINSHIP_STEP override."""
    environment = build.get("Environment") or build.get("environment") or {}
    for item in environment.get("EnvironmentVariables") or environment.get(
            "environmentVariables") or []:
        if (item.get("Name") or item.get("name")) == "TRAINSHIP_STEP":
            return str(item.get("Value") or item.get("value"))
    return None


def _from_document(doc: ErrorDocument) -> ErrorDocument:
    return doc if error_class(doc.error) else InternalError(
        doc.message, details=doc.details, step=doc.step).document()


SERVICE_ERROR_PREFIXES = ("Lambda.", "States.", "CodeBuild.")
SERVICE_ERROR_HELP = ("An AWS service error outlived the state machine's retries (throttling "
                      "or a service fault). Once the service recovers, resume the deployment "
                      "at the step that failed with `trainship redrive ID` (what succeeded, "
                      "training among it, does not run again), or deploy again; if it "
                      "persists, check the service's health and your account's quotas.")


def failure_document(state: FailureContext) -> ErrorDocument:
    """Turn the Catch output (``$.failure``: Error + Cause) into the error document."""
    failure = state.failure or {}
    error = str(failure.get("Error", "States.Runtime"))
    cause = str(failure.get("Cause", ""))
    cause_json: Any = None
    try:
        cause_json = json.loads(cause)
    except ValueError:
        pass
    # A Lambda step: the cause is Lambda's error payload whose errorMessage is our document.
    if isinstance(cause_json, dict) and "errorMessage" in cause_json:
        doc = document_from_json(str(cause_json["errorMessage"]))
        if doc is not None:
            return _from_document(doc)
        return InternalError(f"{cause_json.get('errorType', error)}: "
                             f"{cause_json.get('errorMessage', '')}"[:500],
                             details="\n".join(cause_json.get("stackTrace") or [])[-4000:]
                             ).document()
    # A CodeBuild step: the cause is the build; the step staged its document.
    if isinstance(cause_json, dict) and ("Build" in cause_json or "BuildStatus" in cause_json
                                         or "buildStatus" in cause_json):
        build = cause_json.get("Build", cause_json)
        staged = staging.get_text(staging.error_uri(state.script_uri)) if state.script_uri else None
        doc = document_from_json(staged) if staged else None
        if doc is not None:
            return _from_document(doc)
        step = _build_step(build)
        status = build.get("BuildStatus") or build.get("buildStatus")
        cls_build: type[TrainshipError] = (ImageBuildFailed if step == "BuildImage"
                                           else TrainingBuildFailed)
        return cls_build(f"Build {build.get('Id') or build.get('id')} ended {status}",
                         details=f"logs: {json.dumps(build.get('Logs') or build.get('logs'))}",
                         step=step).document()
    if error.startswith(SERVICE_ERROR_PREFIXES):
        return ErrorDocument(error=error, message=cause[:500] or error, details=cause[-4000:],
                             help=SERVICE_ERROR_HELP)
    return InternalError(f"{error}: {cause[:500]}", details=cause[-4000:]).document()


def record_failure(state: FailureContext, *,
                   cluster: Callable[[], ClusterDriver]) -> dict[str, str]:
    """The error document, and the rollout undone. The cluster driver is built (``cluster``)
    only when there is a rollout to undo: a cluster that cannot be reached (no such EKS
    cluster, DescribeCluster denied) must not hide the error of a step before DeployModel."""
    doc = failure_document(state)
    if doc.step is None and state.failed_step is not None and state.failed_step.name:
        doc = doc.model_copy(update={"step": state.failed_step.name})
    if state.rollout is not None and state.rollout.handle and state.result is None:
        try:
            driver = cluster()
            driver.discard(state.rollout.handle)
            model_auth.restore(driver, state.rollout.handle["model_name"], state.model_auth)
        except ValidationError as exc:  # a handle of another driver, or missing its keys
            LOG.warning("RecordFailure could not undo the rollout: its handle is unreadable "
                        "(%s)", exc.errors(include_url=False))
    return {"error": doc.error, "cause": doc.to_json()}

