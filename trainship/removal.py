"""Deleting a model: DELETE /models/{model_name}, `trainship delete NAME [--purge]`.

The API checks synchronously (``check_deletable``: the registry knows the model, no
execution for it runs) and starts an execution of the state machine with the input
``{"action": "delete", "model_name": NAME, "purge": BOOL}``; its ``Route`` state sends it to
RemoveModel (``remove_model``), which runs where the cluster can be reached:

- every cluster target that may serve the model (the live version's ``trainship.target``,
  the stack's default and every enabled target, so leftovers are found too) removes what
  serves it, under the driver's per-model lock (``ClusterDriver.remove``);
- the MLflow alias is moved off (no alias: serves nothing) and the open serving period
  closed (trainship.served);
- with ``purge`` the model's images and its registered model (every version) are deleted
  too; without it they stay, so the model can be deployed or rolled back again.

Deleting a model that serves nothing succeeds again, with nothing removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from trainship import registry, served
from trainship.cluster import ClusterDriver
from trainship.config import Settings
from trainship.deployments import DeploymentStore
from trainship.errors import DeploymentInProgress, ModelNotFound, TransientError
from trainship.image_pins import ImagePins
from trainship.names import serving_name
from trainship.state import RemovalResult

LOG = logging.getLogger(__name__)
DELETE_ACTION = "delete"
STEP = "RemoveModel"


class DeleteRequest(BaseModel):
    """The execution input of a delete (also what `aws stepfunctions start-execution`
    sends): ``purge`` defaults to false."""

    model_config = ConfigDict(protected_namespaces=(), extra="ignore")

    action: Literal["delete"]
    model_name: str
    purge: bool = False


class RemoveEvent(BaseModel):
    """RemoveModel's payload (the ASL passes the execution input and its name)."""

    request: DeleteRequest
    deployment_id: str


def in_progress_error(model_name: str, running: list[str]) -> DeploymentInProgress:
    return DeploymentInProgress.for_model(model_name, running, refused="it is not deleted",
                                          verb="delete")


def registered(client: Any, model_name: str) -> Any:
    """The registered model; ModelNotFound when the registry does not hold the name."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(model_name)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            raise ModelNotFound(f"The registry has no model {model_name!r}",
                                details=str(exc)[:2000]) from exc
        raise TransientError(f"The MLflow registry did not answer for {model_name!r}",
                             details=str(exc)[:2000]) from exc


def check_deletable(model_name: str, *, store: DeploymentStore, tracking_uri: str) -> None:
    """The API's synchronous check: ModelNotFound (404) or DeploymentInProgress (409)."""
    registered(registry.mlflow_client(tracking_uri), model_name)
    running = store.running_for(model_name)
    if running:
        raise in_progress_error(model_name, running)


def targets_to_search(settings: Settings, live_target: str) -> list[str]:
    """The live version's target first, then the stack's default and the enabled targets."""
    return list(dict.fromkeys(t for t in (live_target, settings.cluster, *settings.targets)
                              if t))


def live_entity(client: Any, model_name: str, alias: str) -> Any:
    """The MLflow ModelVersion the alias points at; None when it points nowhere."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if registry.is_unavailable(exc):  # not "no alias": the delete must not pass it by
            raise TransientError("MLflow is not reachable", details=str(exc),
                                 step=STEP) from exc
        return None


def remove_model(event: RemoveEvent, *, settings: Settings,
                 drivers: Callable[[str], ClusterDriver], pins: ImagePins,
                 running: Callable[[], list[str]] | None = None) -> RemovalResult:
    """Take the model out of service on every target that may serve it, move the alias off
    and close its serving period; with purge also delete its images and registered model.
    ``running``: the other executions for the model that run now, checked again under each
    driver's lock (DeploymentInProgress: nothing is removed by that driver)."""
    name = event.request.model_name
    client = registry.mlflow_client(settings.tracking_uri)
    registered(client, name)
    live = live_entity(client, name, settings.model_alias)
    live_target = served.served_version(live).target if live is not None else ""
    removed: list[str] = []
    notes: list[str] = []
    for target in targets_to_search(settings, live_target):
        try:
            driver = drivers(target)
        except (ValueError, RuntimeError, OSError) as exc:
            if target == live_target:
                raise
            notes.append(f"target {target} not searched ({exc})")
            continue
        with driver.lock(name):
            others = running() if running is not None else []
            if others:
                raise in_progress_error(name, others)
            removed += [f"{target}: {what}" for what in driver.remove(name)]
    alias_removed = None
    if live is not None:
        client.delete_registered_model_alias(name, settings.model_alias)
        alias_removed = str(live.version)
        removed.append(f"alias {settings.model_alias} (was version {alias_removed})")
    served.retire_others(client, name, keep=None)
    result = RemovalResult(deployment_id=event.deployment_id, model_name=name,
                           serving_name=serving_name(name), removed=removed,
                           alias_removed=alias_removed, purged=event.request.purge,
                           message="")
    if event.request.purge:
        versions = served.versions(client, name)
        result.purged_images = pins.purge(name, [v.image_uri for v in versions
                                                 if v.image_uri])
        client.delete_registered_model(name)
        result.purged_versions = [v.version for v in versions]
    if removed:
        result.message = f"{name} is out of service: removed {len(removed)} item(s)"
    else:
        result.message = f"{name} served nothing: nothing to remove"
    if event.request.purge:
        result.message += (f"; purged: the registered model ({len(result.purged_versions)} "
                           f"version(s)) and {len(result.purged_images)} image(s)")
    else:
        result.message += "; its registered versions and images are kept"
    if notes:
        result.message += "; " + "; ".join(notes)
    return result
