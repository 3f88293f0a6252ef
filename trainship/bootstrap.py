"""Runs a user's training script as ``__main__`` after small compatibility fixes.

MLflow 3.14 and later save scikit-learn models with skops by default, and skops refuses
to save a model whose types are not on its trusted list (tree ensembles among them), so
the classic ``mlflow.sklearn.log_model(model, "model")`` fails as written. The fix kept
here: when the script gives neither ``serialization_format`` nor ``skops_trusted_types``,
trust exactly the types of the model the script itself just trained (what
``skops.io.get_untrusted_types`` reports for it). The model stays in the safe skops
format, its trusted list is stored in its MLmodel file, and loading it later needs no
pickle. Scripts that set either argument are left alone.

With ``MLFLOW_TRACKING_AWS_SIGV4=true`` MLflow signs each request with
requests-auth-aws-sigv4, which cannot sign a streamed body: every proxied artifact upload
(MLflow sends the open file) fails with "'BufferedReader' object has no attribute
'encode'". The fix kept here: read such a body into memory before it is signed.
"""

from __future__ import annotations

import functools
import inspect
import os
import runpy
import sys
from typing import Any


def patch_sklearn_skops_default() -> bool:
    try:
        import mlflow.sklearn as mlflow_sklearn
    except ImportError:
        return False
    original = mlflow_sklearn.save_model
    if getattr(original, "__trainship_patched__", False):
        return True
    if "skops_trusted_types" not in inspect.signature(original).parameters:
        return False  # MLflow before skops support: cloudpickle is the default already

    @functools.wraps(original)
    def save_model(sk_model: Any, *args: Any, **kwargs: Any) -> Any:
        fmt = (kwargs.get("serialization_format")
               or mlflow_sklearn._get_default_serialization_format())
        if fmt == "skops" and kwargs.get("skops_trusted_types") is None:
            import skops.io

            kwargs["skops_trusted_types"] = skops.io.get_untrusted_types(
                data=skops.io.dumps(sk_model)) or None
        return original(sk_model, *args, **kwargs)

    save_model.__trainship_patched__ = True  # type: ignore[attr-defined]
    mlflow_sklearn.save_model = save_model
    return True


def patch_sigv4_file_bodies() -> bool:
    try:
        import requests_auth_aws_sigv4
    except ImportError:
        return False
    signer = requests_auth_aws_sigv4.AWSSigV4
    original = signer.__call__
    if getattr(original, "__trainship_patched__", False):
        return True

    @functools.wraps(original)
    def sign(self: Any, request: Any) -> Any:
        body = request.body
        if body is not None and not isinstance(body, bytes | str) and hasattr(body, "read"):
            request.body = body.read()  # Content-Length was taken from the file's size
        return original(self, request)

    sign.__trainship_patched__ = True  # type: ignore[attr-defined]
    signer.__call__ = sign
    return True


def main(argv: list[str]) -> None:
    script = argv[0]
    patch_sklearn_skops_default()
    if os.environ.get("MLFLOW_TRACKING_AWS_SIGV4", "").lower() in ("1", "true"):
        patch_sigv4_file_bodies()
    sys.argv = [script, *argv[1:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
