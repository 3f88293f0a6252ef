"""MLflow Model Registry logic: find the model the run logged, register it, promote it.

Accepts MLflow 3 scripts (models are LoggedModel entities, ``models:/m-...``) and MLflow 2
scripts (a run artifact folder holding an MLmodel file), autologging included.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from trainship.errors import (
    MultipleModelsLogged,
    NoMlflowRun,
    NoModelLogged,
    RegistrationFailed,
    ServingNameTaken,
    TransientError,
)
from trainship.names import DEPLOYMENT_TAG
from trainship.names import serving_name as derive_serving_name
from trainship.state import ModelInfo

STEP = "RegisterModel"
PREFERRED_MODEL_NAME = "model"
# Every registered model trainship deploys carries its serving name (trainship.names), so
# that a second registered name mapping to the same serving name is found and refused.
SERVING_NAME_TAG = "trainship.serving_name"


@dataclass(frozen=True)
class LoggedModelRef:
    name: str
    uri: str
    model_id: str | None = None
    # an MLflow 3 LoggedModel logged with no run (found by the deployment tag)
    run_less: bool = False


def mlflow_client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def is_unavailable(exc: Exception) -> bool:
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


def find_logged_models(client: Any, run: Any, deployment_id: str = "") -> list[LoggedModelRef]:
    """The models the deployment's script logged: LoggedModels of the run (source run or
    run outputs), LoggedModels of the run's experiment tagged with the deployment id (the
    training runner sets that tag through MLFLOW_RUN_CONTEXT, so it is also on a model
    MLflow 3 logged with no run at all), else MLflow 2 artifact folders of the run."""
    run_id = run.info.run_id
    refs: dict[str, LoggedModelRef] = {}
    search = getattr(client, "search_logged_models", None)
    if search is not None:
        filters = [f"source_run_id = '{run_id}'"]
        if re.fullmatch(r"[\w.:-]+", deployment_id):
            filters.append(f"tags.`{DEPLOYMENT_TAG}` = '{deployment_id}'")
        for filter_string in filters:
            for model in search(experiment_ids=[run.info.experiment_id],
                                filter_string=filter_string):
                refs[model.model_id] = LoggedModelRef(
                    name=model.name, uri=f"models:/{model.model_id}", model_id=model.model_id,
                    run_less=not model.source_run_id)
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


def serving_name_owners(client: Any, model_name: str, serving: str) -> list[str]:
    """The other registered models already served under ``serving``: those tagged with it,
    and a model registered under the serving name itself that has versions (names were
    serving names before the tag existed, so such a model is served under it)."""
    owners = {model.name for model in client.search_registered_models(
        filter_string=f"tags.`{SERVING_NAME_TAG}` = '{serving}'")}
    if serving != model_name and client.search_model_versions(
            filter_string=f"name = '{serving}'", max_results=1):
        owners.add(serving)
    owners.discard(model_name)
    return sorted(owners)


def _taken(model_name: str, serving: str, owners: list[str]) -> ServingNameTaken:
    first = owners[0]
    return ServingNameTaken(
        f"Model name {model_name!r} maps to serving name {serving!r}, which registered "
        f"model {first!r} is already served under", step=STEP,
        details=f"registered models served as {serving!r}: {', '.join(owners)}",
        help=(f"{model_name!r} and {first!r} both map to the serving name {serving!r} "
              f"(Kubernetes objects, image tags and URLs need DNS-1123 names). Deploy as "
              f"model_name {first!r} to add a version to that model, or choose a name "
              f"whose serving name differs, e.g. {model_name + '_2'!r}."))


def claim_serving_name(client: Any, model_name: str) -> str:
    """Refuse ``model_name`` (ServingNameTaken) when another registered model is served
    under its serving name; otherwise create the registered model if needed and tag it
    with its serving name. Runs before a version is created: nothing is half-deployed.

    Two names claimed at the same moment both pass the first check; the check after
    tagging sees both, and the registered model created first keeps the serving name
    (ties: the smaller name). The other drops its tag and is refused."""
    from mlflow.exceptions import MlflowException

    serving = derive_serving_name(model_name)
    owners = serving_name_owners(client, model_name, serving)
    if owners:
        raise _taken(model_name, serving, owners)
    try:
        client.create_registered_model(model_name, tags={SERVING_NAME_TAG: serving})
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
        client.set_registered_model_tag(model_name, SERVING_NAME_TAG, serving)
    rivals = serving_name_owners(client, model_name, serving)
    if rivals:
        def created(name: str) -> tuple[int, str]:
            return int(client.get_registered_model(name).creation_timestamp or 0), name

        mine = created(model_name)
        earlier = [name for name in rivals if created(name) < mine]
        if earlier:
            client.delete_registered_model_tag(model_name, SERVING_NAME_TAG)
            raise _taken(model_name, serving, earlier)
    return serving


def register_run_less(client: Any, ref: LoggedModelRef, model_name: str, run_id: str,
                      tags: dict[str, str]) -> Any:
    """Register a LoggedModel the script logged with no run: link it to the deployment's
    run first (the run's outputs list it, as if logged inside the run), and give the
    version that run, which MLflow would otherwise take from the model's empty source."""
    from mlflow.entities import LoggedModelOutput

    assert ref.model_id is not None
    client.log_outputs(run_id, [LoggedModelOutput(model_id=ref.model_id, step=0)])
    return client.create_model_version(model_name, ref.uri, run_id=run_id, tags=tags,
                                       model_id=ref.model_id)


def register(*, tracking_uri: str, deployment_id: str, model_name: str,
             run_id: str) -> ModelInfo:
    """Validate the run and register a new version of ``model_name``."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if is_unavailable(exc):
            raise TransientError("MLflow is not reachable", details=str(exc), step=STEP) from exc
        raise NoMlflowRun(f"MLflow run {run_id} does not exist", details=str(exc),
                          step=STEP) from exc
    refs = find_logged_models(client, run, deployment_id)
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
        claim_serving_name(client, model_name)
        if chosen.run_less:
            version = register_run_less(client, chosen, model_name, run_id, tags)
        else:
            version = mlflow.register_model(chosen.uri, model_name, tags=tags)
    except MlflowException as exc:
        if is_unavailable(exc):
            raise TransientError("MLflow is not reachable", details=str(exc), step=STEP) from exc
        raise RegistrationFailed(f"MLflow refused to register {model_name}",
                                 details=str(exc), step=STEP) from exc
    flavors, requirements = _model_metadata(chosen.uri, tracking_uri)
    if "python_function" not in flavors and flavors:
        raise RegistrationFailed(
            f"The model logged by run {run_id} has no python_function flavor, so it cannot "
            "be served", details=f"flavors: {flavors}", step=STEP)
    return ModelInfo(name=model_name, version=str(version.version), run_id=run_id,
                     model_uri=chosen.uri, source=str(version.source), flavors=flavors,
                     requirements=requirements)


def promote(*, tracking_uri: str, model_name: str, version: str, alias: str,
            replace_higher: bool = False) -> bool:
    """Point the alias at the version (only after it serves), unless the alias already
    points at a higher version and this is no rollback (``replace_higher``). Returns
    whether the alias moved."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(tracking_uri)
    try:
        current = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        current = None
    if current is not None and int(current.version) > int(version) and not replace_higher:
        return False
    client.set_registered_model_alias(model_name, alias, version)
    return True


def serving_input_example(model_name: str, version: str,
                          tracking_uri: str) -> dict[str, Any] | None:
    """The registered version's logged serving input example (MLflow >= 2.16), or None.

    Read through ``models:/NAME/VERSION``: MLflow 3's ``models:/m-<id>`` (a LoggedModel)
    loads as a model, but a file below it does not resolve (the artifact repository takes
    ``m-<id>`` for a registered model's name and finds none)."""
    import mlflow
    from mlflow.artifacts import download_artifacts

    mlflow.set_tracking_uri(tracking_uri)
    try:
        path = download_artifacts(
            artifact_uri=f"models:/{model_name}/{version}/serving_input_example.json")
    except Exception:  # noqa: BLE001 - no example logged
        return None
    with open(path) as handle:
        data: dict[str, Any] = json.load(handle)
    return data
