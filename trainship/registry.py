"""MLflow Model Registry logic: find the model the run logged, register it, promote it.

Accepts MLflow 3 scripts (models are LoggedModel entities, ``models:/m-...``) and MLflow 2
scripts (a run artifact folder holding an MLmodel file), autologging included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from trainship.errors import (
    MultipleModelsLogged,
    NoMlflowRun,
    NoModelLogged,
    RegistrationFailed,
    TransientError,
)
from trainship.state import ModelInfo

STEP = "RegisterModel"
DEPLOYMENT_TAG = "trainship.deployment_id"
PREFERRED_MODEL_NAME = "model"


@dataclass(frozen=True)
class LoggedModelRef:
    name: str
    uri: str
    model_id: str | None = None


def _client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _is_unavailable(exc: Exception) -> bool:
    text = str(exc)
    return any(marker in text for marker in ("Connection refused", "Max retries exceeded",
                                             "ConnectionError", "503", "502"))


def run_has_content(run: Any) -> bool:
    """Did the script log anything at all to the run (beyond trainship's own tags)?"""
    data = run.data
    user_tags = [k for k in data.tags if not k.startswith(("mlflow.", "trainship."))]
    outputs = getattr(run, "outputs", None)
    models = getattr(outputs, "model_outputs", None) or []
    return bool(data.params or data.metrics or user_tags or models)


def _artifact_models(client: Any, run_id: str, path: str = "", depth: int = 0) -> list[str]:
    """Run artifact folders that hold an MLmodel file (MLflow 2 style)."""
    found: list[str] = []
    for item in client.list_artifacts(run_id, path or None):
        if item.is_dir and depth < 3:
            found.extend(_artifact_models(client, run_id, item.path, depth + 1))
        elif not item.is_dir and item.path.rsplit("/", 1)[-1] == "MLmodel":
            found.append(item.path.rsplit("/", 1)[0] if "/" in item.path else "")
    return found


def find_logged_models(client: Any, run: Any) -> list[LoggedModelRef]:
    run_id = run.info.run_id
    refs: dict[str, LoggedModelRef] = {}
    search = getattr(client, "search_logged_models", None)
    if search is not None:
        for model in search(experiment_ids=[run.info.experiment_id],
                            filter_string=f"source_run_id = '{run_id}'"):
            refs[model.model_id] = LoggedModelRef(name=model.name, uri=f"models:/{model.model_id}",
                                                  model_id=model.model_id)
    outputs = getattr(run, "outputs", None)
    for output in getattr(outputs, "model_outputs", None) or []:
        if output.model_id not in refs:
            logged = client.get_logged_model(output.model_id)
            refs[output.model_id] = LoggedModelRef(name=logged.name,
                                                   uri=f"models:/{output.model_id}",
                                                   model_id=output.model_id)
    if not refs:
        for path in _artifact_models(client, run_id):
            refs[path] = LoggedModelRef(name=path or PREFERRED_MODEL_NAME,
                                        uri=f"runs:/{run_id}/{path}".rstrip("/"))
    return list(refs.values())


def choose_model(refs: list[LoggedModelRef], run_id: str) -> LoggedModelRef:
    if not refs:
        raise NoModelLogged(f"MLflow run {run_id} has no logged model", step=STEP)
    if len(refs) == 1:
        return refs[0]
    named = [ref for ref in refs if ref.name == PREFERRED_MODEL_NAME]
    if len(named) == 1:
        return named[0]
    raise MultipleModelsLogged(
        f"MLflow run {run_id} logged {len(refs)} models and none is uniquely named "
        f"{PREFERRED_MODEL_NAME!r}", details=", ".join(f"{r.name} ({r.uri})" for r in refs),
        step=STEP)


def _model_metadata(model_uri: str, tracking_uri: str) -> tuple[list[str], list[str]]:
    """The model's flavors and pip requirements, read from its MLmodel / requirements.txt."""
    import mlflow
    from mlflow.models import Model

    mlflow.set_tracking_uri(tracking_uri)
    flavors: list[str] = []
    requirements: list[str] = []
    try:
        model = Model.load(model_uri)
        flavors = sorted(model.flavors)
    except Exception:  # noqa: BLE001 - metadata is informative; registration decides
        return flavors, requirements
    try:
        from mlflow.pyfunc import get_model_dependencies

        path = get_model_dependencies(model_uri, format="pip")
        with open(path) as handle:
            requirements = [line.strip() for line in handle
                            if line.strip() and not line.startswith("#")]
    except Exception:  # noqa: BLE001 - requirements are informative; serving reads the model
        requirements = []
    return flavors, requirements


def register(*, tracking_uri: str, deployment_id: str, model_name: str, run_id: str,
             replicas: int = 1) -> ModelInfo:
    """Validate the run and register a new version of ``model_name``."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if _is_unavailable(exc):
            raise TransientError("MLflow is not reachable", details=str(exc), step=STEP) from exc
        raise NoMlflowRun(f"MLflow run {run_id} does not exist", details=str(exc),
                          step=STEP) from exc
    refs = find_logged_models(client, run)
    if not refs and not run_has_content(run):
        raise NoMlflowRun(
            f"The script logged nothing to MLflow run {run_id}", step=STEP,
            details="The run trainship created for the script has no params, metrics, "
                    "tags or models.")
    chosen = choose_model(refs, run_id)
    tags = {DEPLOYMENT_TAG: deployment_id, "trainship.run_id": run_id}
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        version = mlflow.register_model(chosen.uri, model_name, tags=tags)
    except MlflowException as exc:
        if _is_unavailable(exc):
            raise TransientError("MLflow is not reachable", details=str(exc), step=STEP) from exc
        raise RegistrationFailed(f"MLflow refused to register {model_name}",
                                 details=str(exc), step=STEP) from exc
    flavors, requirements = _model_metadata(chosen.uri, tracking_uri)
    if "python_function" not in flavors and flavors:
        raise RegistrationFailed(
            f"The model logged by run {run_id} has no python_function flavor, so it cannot "
            "be served", details=f"flavors: {flavors}", step=STEP)
    return ModelInfo(deployment_id=deployment_id, name=model_name, version=str(version.version),
                     run_id=run_id, model_uri=chosen.uri, source=str(version.source),
                     flavors=flavors, requirements=requirements, replicas=replicas)


def promote(*, tracking_uri: str, model_name: str, version: str, alias: str) -> bool:
    """Point the alias at the version (only after it serves), unless the alias already
    points at a higher version. Returns whether the alias moved."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        current = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        current = None
    if current is not None and int(current.version) > int(version):
        return False
    client.set_registered_model_alias(model_name, alias, version)
    return True


def serving_input_example(model_uri: str, tracking_uri: str) -> dict[str, Any] | None:
    """The model's logged serving input example (MLflow >= 2.16), or None."""
    import mlflow
    from mlflow.artifacts import download_artifacts

    mlflow.set_tracking_uri(tracking_uri)
    try:
        path = download_artifacts(artifact_uri=f"{model_uri}/serving_input_example.json")
    except Exception:  # noqa: BLE001 - no example logged
        return None
    with open(path) as handle:
        data: dict[str, Any] = json.load(handle)
    return data
