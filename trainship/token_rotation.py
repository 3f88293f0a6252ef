"""Rotating a model's inference token: POST /models/{model_name}/token, `trainship token
rotate NAME`.

The API checks synchronously (``check``: the registry knows the model, no execution for it
runs; a refusal changes nothing) and starts an execution of the state machine with the
input ``{"action": "rotate-token", "model_name": NAME}``; its ``Route`` state sends it to
RotateToken (``rotate_token``), which runs where the cluster can be reached: it checks again
(anyone may start such an execution with ``aws stepfunctions start-execution``; locally
under the model's lock, while on Kubernetes ``lock`` is a no-op and the Secret's write is a
compare-and-swap on its resourceVersion, ClusterDriver.update_auth), replaces the model's
token with a new one and returns it, once, as the execution's output (``TokenRotation``).
The old token stops working at once locally; on Kubernetes when the kubelet refreshes the
Secret's volume in the pods, up to about 1-2 minutes (docs/deploy-to-aws.md, "Inference
tokens"). A rotation that fails after the write leaves a token nobody was given; running it
again (a redrive) issues another.

Refusals: ModelNotFound (no such registered model, or it serves nothing), AuthNotEnabled
(the model's URL is open: nothing to rotate; only ever the execution's error, never an API
answer), DeploymentInProgress.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from trainship import model_auth, registry, served
from trainship.cluster import ClusterDriver
from trainship.config import Settings
from trainship.deployments import DeploymentStore
from trainship.errors import AuthNotEnabled, DeploymentInProgress, ModelNotFound
from trainship.names import model_name_problem, serving_name
from trainship.records import Accepted
from trainship.removal import live_entity, registered
from trainship.state import TokenRotation
from trainship.submit import new_deployment_id

ROTATE_ACTION = "rotate-token"
STEP = "RotateToken"


class RotateRequest(BaseModel):
    """The execution input of a rotation (also what `aws stepfunctions start-execution`
    sends)."""

    model_config = ConfigDict(protected_namespaces=(), extra="ignore")

    action: Literal["rotate-token"]
    model_name: str


class RotateEvent(BaseModel):
    """RotateToken's payload (the ASL passes the execution input and its name)."""

    request: RotateRequest
    deployment_id: str


def in_progress_error(model_name: str, running: list[str]) -> DeploymentInProgress:
    return DeploymentInProgress.for_model(model_name, running, refused="its token is not rotated",
                                          verb="rotate")


def check(model_name: str, *, store: DeploymentStore, tracking_uri: str) -> None:
    """The API's synchronous check: ModelNotFound (404) or DeploymentInProgress (409)."""
    problem = model_name_problem(model_name)
    if problem:
        raise ModelNotFound(f"No registered model {model_name!r}: {problem}")
    registered(registry.mlflow_client(tracking_uri), model_name)
    running = store.running_for(model_name)
    if running:
        raise in_progress_error(model_name, running)


def start(model_name: str, *, store: DeploymentStore, tracking_uri: str) -> Accepted:
    """The API's rotation: checked (4xx, nothing started), then the execution (202)."""
    check(model_name, store=store, tracking_uri=tracking_uri)
    deployment_id = new_deployment_id()
    arn = store.start(deployment_id, {"action": ROTATE_ACTION, "model_name": model_name})
    return Accepted(deployment_id=deployment_id, status="RUNNING", execution_arn=arn,
                    status_url=f"/deployments/{deployment_id}")


def rotate_token(event: RotateEvent, *, settings: Settings,
                 drivers: Callable[[str], ClusterDriver],
                 running: Callable[[], list[str]] | None = None) -> TokenRotation:
    """RotateToken: a new token for the live model, on the target that serves it.
    ``running``: the other executions for the model that run now, checked under the
    model's lock."""
    name = event.request.model_name
    client = registry.mlflow_client(settings.tracking_uri)
    registered(client, name)
    live = live_entity(client, name, settings.model_alias)
    if live is None:
        raise ModelNotFound(f"{name} serves nothing: there is no token to rotate",
                            help=f"Deploy it (`trainship deploy train.py --model-name {name} "
                                 "--auth token`) or roll it back to a version that served.",
                            step=STEP)
    version = served.served_version(live)
    driver = drivers(settings.driver_name(version.target))
    with driver.lock(name):
        others = running() if running is not None else []
        if others:
            raise in_progress_error(name, others)
        token = model_auth.rotate(driver, name)
    if token is None:
        raise AuthNotEnabled(f"{name}'s URL is open (auth none): it has no token to rotate",
                             step=STEP)
    return TokenRotation(
        deployment_id=event.deployment_id, model_name=name, serving_name=serving_name(name),
        inference_url=version.inference_url, inference_token=token,
        message=f"{name} has a new token; the old one stops working (on Kubernetes within "
                "up to about 1-2 minutes, when the pods see the updated Secret)")
