"""The kubernetes driver's auth files: the Secret ``<serving name>-auth`` (key ``auth``) in
the namespace, which every pod of the model mounts as a directory
(manifests.AUTH_DIR, env TRAINSHIP_SERVING_AUTH_FILE).

Permissions: get, create, patch and delete on ``secrets`` in the namespace. The EKS access
policy the cluster role is given, AmazonEKSEditPolicy, has them: "secrets" with create,
delete, deletecollection, patch, update and with get, list, watch ("Review access policy
permissions", Amazon EKS User Guide).

Every change is a compare-and-swap (``update_auth``): GET the Secret, then server-side
apply it with the ``metadata.resourceVersion`` that GET returned, or create it (POST) when
there was none. The API server refuses either with 409 Conflict when someone wrote (or
created) it in between ("if the resourceVersion of the object differs from the one
supplied, the update is rejected with a 409 Conflict", Kubernetes API concepts, "Resource
versions"; an apply patch that sets resourceVersion is checked the same way); the change is
then made again on the new text, a few times, and after that the step fails with
TransientError, which the state machine retries. A plain server-side apply with
force=true would overwrite a concurrent deployment's entries.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from kubernetes.client.rest import ApiException

from trainship.cluster.kube_api import KubeApi, object_path
from trainship.cluster.manifests import AUTH_KEY, auth_secret, auth_secret_name
from trainship.errors import RolloutFailed, TransientError

UPDATE_ATTEMPTS = 4

AUTH_HELP = ("The model's inference token lives in the Secret <serving name>-auth of the "
             "namespace: the identity the pipeline runs as needs get, create, patch and "
             "delete on secrets there (AmazonEKSEditPolicy has them; on EKS, associate it "
             "with the cluster role's access entry, scoped to trainship:eksNamespace).")


# what the API server answers when it is busy or briefly down, not when it refuses
BUSY_STATUSES = (429, 500, 502, 503, 504)


def _refused(what: str, model_name: str, namespace: str,
             exc: ApiException) -> RolloutFailed | TransientError:
    if exc.status in BUSY_STATUSES:  # throttled or unavailable: the state machine retries
        return TransientError(
            f"Kubernetes could not {what} the auth Secret of {model_name} in namespace "
            f"{namespace!r} now: {exc.status} {exc.reason}",
            details=str(exc.body or "")[-4000:], help=AUTH_HELP)
    return RolloutFailed(
        f"Kubernetes refused to {what} the auth Secret of {model_name} in namespace "
        f"{namespace!r}: {exc.status} {exc.reason}", details=str(exc.body or "")[-4000:],
        help=AUTH_HELP)


def _get(api: KubeApi, namespace: str, model_name: str) -> Any:
    try:
        return api.get(object_path("Secret", namespace, auth_secret_name(model_name)))
    except ApiException as exc:
        raise _refused("read", model_name, namespace, exc) from exc


def read_auth(api: KubeApi, namespace: str, model_name: str) -> str | None:
    """The auth file text the model's Secret holds; None when there is no Secret (or it
    has no ``auth`` key)."""
    return _text(_get(api, namespace, model_name), namespace, model_name)


def _text(secret: Any, namespace: str, model_name: str) -> str | None:
    data = (secret or {}).get("data") or {}
    if AUTH_KEY not in data:
        return None
    try:
        return base64.b64decode(data[AUTH_KEY], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise RolloutFailed(f"The auth Secret of {model_name} in namespace {namespace!r} "
                            f"is not an auth file: {exc}", help=AUTH_HELP) from exc


def write_auth(api: KubeApi, namespace: str, model_name: str, text: str) -> None:
    """Create or replace the model's Secret (server-side apply)."""
    try:
        api.apply(auth_secret(model_name, namespace, text))
    except ApiException as exc:
        raise _refused("write", model_name, namespace, exc) from exc


def update_auth(api: KubeApi, namespace: str, model_name: str,
                change: Callable[[str | None], str | None]) -> str | None:
    """ClusterDriver.update_auth: a compare-and-swap on the Secret's resourceVersion."""
    for _ in range(UPDATE_ATTEMPTS):
        secret = _get(api, namespace, model_name)
        text = _text(secret, namespace, model_name)
        new = change(text)
        if new is None or new == text:
            return text
        obj = auth_secret(model_name, namespace, new)
        try:
            if secret:
                obj["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
                api.apply(obj)
            else:  # create: 409 AlreadyExists when another writer created it first
                api.request("POST", object_path("Secret", namespace), body=obj)
        except ApiException as exc:
            if exc.status == 409:
                continue
            raise _refused("write", model_name, namespace, exc) from exc
        return new
    raise TransientError(
        f"The auth Secret of {model_name} in namespace {namespace!r} kept changing under "
        f"this step ({UPDATE_ATTEMPTS} attempts, 409 Conflict each time): another "
        "deployment or rotation of the model writes it; the state machine tries again",
        help=AUTH_HELP)
