"""Submitting a deployment: validate first (400, no execution), then start it."""

from __future__ import annotations

import uuid
from typing import Any

from trainship.deployments import DeploymentStore
from trainship.errors import IdempotencyConflict, InvalidRequest
from trainship.records import Accepted
from trainship.removal import DELETE_ACTION, check_deletable
from trainship.request import deployment_id_for, parse_request


def new_deployment_id() -> str:
    return "d-" + uuid.uuid4().hex[:16]


def submit(body: Any, *, store: DeploymentStore, idempotency_key: str | None = None,
           targets: tuple[str, ...] = ()) -> Accepted:
    """The 202's answer; InvalidRequest (nothing started) or IdempotencyConflict."""
    request, _ = parse_request(body, targets)
    key = idempotency_key or request.idempotency_key
    if idempotency_key and request.idempotency_key and idempotency_key != request.idempotency_key:
        raise InvalidRequest("The Idempotency-Key header and idempotency_key field differ")
    deployment_id = deployment_id_for(key, new_deployment_id())
    execution_input = dict(body)
    execution_input.pop("idempotency_key", None)
    try:
        arn = store.start(deployment_id, execution_input)
    except store.sfn.exceptions.ExecutionAlreadyExists as exc:
        # Step Functions is idempotent only while the execution runs; after that the same
        # key with the same body still answers with the original deployment.
        if not key or store.execution_input(deployment_id) != execution_input:
            raise IdempotencyConflict(f"Idempotency-Key {key!r} was used for another request",
                                      details=str(exc)) from exc
        arn = store.execution_arn(deployment_id)
    return Accepted(deployment_id=deployment_id, status="RUNNING", execution_arn=arn,
                    status_url=f"/deployments/{deployment_id}")


def submit_delete(model_name: str, *, purge: bool, store: DeploymentStore,
                  tracking_uri: str) -> Accepted:
    """DELETE /models/{model_name}: checked first (ModelNotFound, DeploymentInProgress:
    nothing started, nothing changed), then an execution with the delete's input, which
    the state machine's Route sends to RemoveModel (trainship.removal)."""
    check_deletable(model_name, store=store, tracking_uri=tracking_uri)
    deployment_id = new_deployment_id()
    arn = store.start(deployment_id, {"action": DELETE_ACTION, "model_name": model_name,
                                      "purge": purge})
    return Accepted(deployment_id=deployment_id, status="RUNNING", execution_arn=arn,
                    status_url=f"/deployments/{deployment_id}")
