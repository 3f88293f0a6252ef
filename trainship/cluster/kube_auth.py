"""The kubernetes driver's auth files: the Secret ``<serving name>-auth`` (key ``auth``) in
the namespace, which every pod of the model mounts as a directory
(manifests.AUTH_DIR, env TRAINSHIP_SERVING_AUTH_FILE).

Permissions: get, create, patch and delete on ``secrets`` in the namespace. The EKS access
policy the cluster role is given, AmazonEKSEditPolicy, has them: "secrets" with create,
delete, deletecollection, patch, update and with get, list, watch ("Review access policy
permissions", Amazon EKS User Guide). A Secret is written by server-side apply like the
other objects (``patch``; ``create`` when it is new).
"""

from __future__ import annotations

import base64
import binascii

from kubernetes.client.rest import ApiException

from trainship.cluster.kube_api import KubeApi, object_path
from trainship.cluster.manifests import AUTH_KEY, auth_secret, auth_secret_name
from trainship.errors import RolloutFailed

AUTH_HELP = ("The model's inference token lives in the Secret <serving name>-auth of the "
             "namespace: the identity the pipeline runs as needs get, create, patch and "
             "delete on secrets there (AmazonEKSEditPolicy has them; on EKS, associate it "
             "with the cluster role's access entry, scoped to trainship:eksNamespace).")


def _refused(what: str, model_name: str, namespace: str, exc: ApiException) -> RolloutFailed:
    return RolloutFailed(
        f"Kubernetes refused to {what} the auth Secret of {model_name} in namespace "
        f"{namespace!r}: {exc.status} {exc.reason}", details=str(exc.body or "")[-4000:],
        help=AUTH_HELP)


def read_auth(api: KubeApi, namespace: str, model_name: str) -> str | None:
    """The auth file text the model's Secret holds; None when there is no Secret (or it
    has no ``auth`` key)."""
    try:
        secret = api.get(object_path("Secret", namespace, auth_secret_name(model_name)))
    except ApiException as exc:
        raise _refused("read", model_name, namespace, exc) from exc
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
