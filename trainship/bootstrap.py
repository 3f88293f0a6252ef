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

Both fixes are applied when the script (or MLflow on its behalf) first imports the module
concerned, not before the script starts: a script pays no import time for them, and a
module imported late (autologging imports ``mlflow.sklearn`` itself) is still fixed.

A script that raises ends with its own traceback: the frames of this module and of
``runpy`` that run it are left out, so ``details`` starts at the script's own lines.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import inspect
import os
import runpy
import sys
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any


def patch_sklearn_skops_default() -> bool:
    try:
        # from sys.modules: while mlflow.sklearn is being imported, the attribute
        # mlflow.sklearn is still MLflow's lazy loader, not the module
        mlflow_sklearn: Any = importlib.import_module("mlflow.sklearn")
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


class _PatchingLoader(importlib.abc.Loader):
    """Runs the module's own loader, then the patch; everything else is the loader's."""

    def __init__(self, loader: Any, patch: Callable[[], object]) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._patch()

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Applies ``patches[name]`` right after module ``name`` is first imported."""

    def __init__(self, patches: dict[str, Callable[[], object]]) -> None:
        self.pending = dict(patches)

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        patch = self.pending.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    del self.pending[fullname]
                    spec.loader = _PatchingLoader(spec.loader, patch)
                return spec
        return None


def install_patches(sigv4: bool) -> PatchOnImport:
    """Apply the fixes now for modules already imported, else when they are imported."""
    patches: dict[str, Callable[[], object]] = {"mlflow.sklearn": patch_sklearn_skops_default}
    if sigv4:
        patches["requests_auth_aws_sigv4"] = patch_sigv4_file_bodies
    for name in [n for n in patches if n in sys.modules]:
        patches.pop(name)()
    hook = PatchOnImport(patches)
    sys.meta_path.insert(0, hook)
    return hook


def user_traceback(exc: BaseException, script: str) -> str:
    """The exception's traceback from the script's first frame on, the script named by its
    file name (the runner's working directory is no business of the user's)."""
    tb = exc.__traceback__
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename != script:
        first = first.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, first or tb))
    return text.replace(f'File "{script}"', f'File "{os.path.basename(script)}"')


def main(argv: list[str]) -> None:
    script = os.path.abspath(argv[0])
    install_patches(os.environ.get("MLFLOW_TRACKING_AWS_SIGV4", "").lower() in ("1", "true"))
    sys.argv = [script, *argv[1:]]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported as Python would, minus our frames
        sys.stdout.flush()
        sys.stderr.write(user_traceback(exc, script))
        sys.stderr.flush()
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
