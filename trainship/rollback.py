"""Rolling a model back: serve an earlier registered version again from its image.

The API checks a rollback against the registry before anything starts (``check``: the
model, the version, that it served and still has its image, that it is not the live one,
that nothing else of the model runs; a refusal changes nothing) and starts an execution
of the state machine with ``{"action": "rollback", "model_name", "version"}`` (``start``).
The state machine's ``Route`` sends that input to PrepareRollback (``prepare``), which
checks again (anyone may start such an execution with ``aws stepfunctions
start-execution``) and hands DeployModel the state BuildImage would have left: the
registered model and its image (``IMAGE_URI``), marked as a rollback. From there it is a
deployment: rollout checks, the smoke test, PromoteModel (which, for a rollback, makes the
lower version live and moves the alias down) and RecordFailure's undo on failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from trainship import registry, served, staging
from trainship.deployments import DeploymentStore
from trainship.errors import (
    DeploymentInProgress,
    ImageNotFound,
    InvalidRequest,
    ModelNotFound,
    ModelVersionNotFound,
    TargetNotEnabled,
    TransientError,
    VersionAlreadyLive,
    VersionNeverServed,
)
from trainship.image_pins import ImagePins
from trainship.names import DEPLOYMENT_TAG, model_name_problem, serving_name
from trainship.records import Accepted
from trainship.request import DEFAULT_TIMEOUT_SECONDS, Resources, RollbackRequest
from trainship.state import BuildResult, DeploymentState, ExportedVariable, ModelInfo, Rollback
from trainship.submit import new_deployment_id


class RollbackInput(RollbackRequest):
    """The execution's input (the state machine's Route sends it to PrepareRollback)."""

    action: Literal["rollback"]
    model_name: str


def parse(model: type[RollbackRequest], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest("The rollback request is not valid", step=None,
                             details="\n".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: "
                                               f"{e['msg']}" for e in exc.errors()),
                             help='Send {"version": "N"}, N a registered version of the '
                                  'model that served before, e.g. {"version": "1"}.') from exc


@dataclass(frozen=True)
class Plan:
    """A rollback that passed the checks."""

    model_name: str
    version: served.ServedVersion
    entity: Any  # the MLflow ModelVersion
    live_version: str | None


def _mlflow_call(fn: Callable[[], Any], *, missing: Callable[[Exception], Exception]) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return fn()
    except MlflowException as exc:
        if registry.is_unavailable(exc):
            raise TransientError("MLflow is not reachable", details=str(exc)) from exc
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            raise missing(exc) from exc
        raise


def live_version(client: Any, model_name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if registry.is_unavailable(exc):
            raise TransientError("MLflow is not reachable", details=str(exc)) from exc
        return None


def check(client: Any, *, model_name: str, version: str, alias: str, images: ImagePins,
          in_progress: Callable[[], list[str]] | None = None) -> Plan:
    """The rollback of ``model_name`` to ``version``, checked; each refusal its own error."""
    problem = model_name_problem(model_name)
    if problem:
        raise ModelNotFound(f"No registered model {model_name!r}: {problem}")
    _mlflow_call(lambda: client.get_registered_model(model_name),
                 missing=lambda exc: ModelNotFound(f"No registered model {model_name!r}",
                                                   details=str(exc)[:500]))
    versions = served.versions(client, model_name)
    known = {v.version: v for v in versions}
    listing = (f"versions of {model_name}: {', '.join(known) or 'none'}; served: "
               f"{', '.join(v.version for v in versions if v.ever_served) or 'none'}")
    if version not in known:
        raise ModelVersionNotFound(f"{model_name} has no version {version}", details=listing)
    target = known[version]
    live = live_version(client, model_name, alias)
    if live == version:
        raise VersionAlreadyLive(f"{model_name} v{version} is already live", details=listing)
    if not target.ever_served or not target.image_uri:
        raise VersionNeverServed(f"{model_name} v{version} never served, so it has no image "
                                 "to serve again", details=listing)
    running = in_progress() if in_progress is not None else []
    if running:
        raise DeploymentInProgress(f"{model_name} has an execution running: "
                                   f"{', '.join(running)}", details=", ".join(running))
    if not images.exists(target.image_uri):
        raise ImageNotFound(f"The image of {model_name} v{version} no longer exists",
                            details=target.image_uri)
    entity = client.get_model_version(model_name, version)
    return Plan(model_name=model_name, version=target, entity=entity, live_version=live)


def start(body: Any, model_name: str, *, store: DeploymentStore, tracking_uri: str,
          alias: str, images: ImagePins) -> Accepted:
    """The API's rollback: checked (4xx, nothing started), then the execution (202)."""
    request = parse(RollbackRequest, body)
    check(registry.mlflow_client(tracking_uri), model_name=model_name,
          version=request.version, alias=alias, images=images,
          in_progress=lambda: store.running_for(model_name))
    deployment_id = new_deployment_id()
    arn = store.start(deployment_id, {"action": "rollback", "model_name": model_name,
                                      "version": request.version})
    return Accepted(deployment_id=deployment_id, status="RUNNING", execution_arn=arn,
                    status_url=f"/deployments/{deployment_id}")


def _registered_job(plan: Plan, staging_uri: str) -> DeploymentState | None:
    """The job document the version's own deployment staged after RegisterModel (its
    model, requirements, replicas, resources), if it is still there."""
    deployment_id = (plan.entity.tags or {}).get(DEPLOYMENT_TAG, "")
    if not deployment_id:
        return None
    text = staging.get_text(staging.join(staging_uri, deployment_id, "job.json"))
    if not text:
        return None
    try:
        job = DeploymentState.model_validate_json(text)
    except ValidationError:
        return None
    return job if job.model is not None and job.model.version == plan.version.version else None


def prepare(body: Any, *, deployment_id: str, started_at: str, staging_uri: str,
            tracking_uri: str, alias: str, targets: tuple[str, ...],
            images: ImagePins) -> DeploymentState:
    """PrepareRollback: the checks again, then the state DeployModel takes."""
    request = parse(RollbackInput, body)
    plan = check(registry.mlflow_client(tracking_uri), model_name=request.model_name,
                 version=request.version, alias=alias, images=images)
    target = plan.version.target
    if targets and target not in targets:
        raise TargetNotEnabled(f"{request.model_name} v{request.version} served on "
                               f"{target!r}, which this stack does not enable",
                               details=f"enabled: {', '.join(targets)}")
    job = _registered_job(plan, staging_uri)
    entity = plan.entity
    model = job.model if job is not None and job.model is not None else ModelInfo(
        name=request.model_name, version=request.version, run_id=str(entity.run_id or ""),
        model_uri=str(entity.source), source=str(entity.source))
    return DeploymentState(
        deployment_id=deployment_id, model_name=request.model_name,
        serving_name=serving_name(request.model_name),
        experiment_name=job.experiment_name if job else request.model_name,
        script_uri="", script_sha256="",
        requirements=job.requirements if job else model.requirements,
        timeout_seconds=job.timeout_seconds if job else DEFAULT_TIMEOUT_SECONDS,
        replicas=job.replicas if job else 1,
        resources=job.resources if job else Resources(),
        debug=job.debug if job else False,
        started_at=started_at, target=target, model=model,
        image=BuildResult(build_id="", exported_variables=[
            ExportedVariable(Name="IMAGE_URI", Value=plan.version.image_uri)]),
        rollback=Rollback(replaced_version=plan.live_version or ""))
