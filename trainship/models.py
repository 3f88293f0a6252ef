"""What trainship serves, read from the MLflow registry: GET /models and GET /models/{name}.

The registry is the record (trainship.served): a registered model trainship deployed
carries its serving name (registry.SERVING_NAME_TAG), the alias (settings.model_alias)
names the version that serves, and each version that went live carries its image, URL,
target and serving periods. Nothing here writes.

The API function answers within API Gateway's 29 s: MLflow's client retries a failing
request for minutes by default (7 retries, backoff factor 2), so the API function runs
with API_MLFLOW_ENV (infra/constructs/api.py sets it), and a listing stops starting new
MLflow requests after BUDGET_SECONDS. Either way an unreachable, slow or refusing MLflow
answers RegistryUnavailable (503) instead of API Gateway's 504.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from trainship import served
from trainship.errors import ModelNotFound, RegistryUnavailable
from trainship.names import model_name_problem
from trainship.names import serving_name as derive_serving_name
from trainship.records import ModelDetail, ModelList, ModelRecord, VersionRecord
from trainship.registry import SERVING_NAME_TAG, mlflow_client

# MLflow's HTTP client settings for the API function (mlflow.environment_variables): one
# retry, 4 s per attempt, so one request gives up within about 10 s (4 + backoff + 4).
API_MLFLOW_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "4",
}
# No MLflow request starts after this long: the last one ends before the gateway's 29 s.
BUDGET_SECONDS = 12.0
# MLflow's page sizes (search_registered_models allows up to 1000, search_model_versions
# up to 200000 a page); every page is read.
MODELS_PAGE = 200
VERSIONS_PAGE = 1000


class _Registry:
    """The MLflow calls of one answer, each within the time budget; MLflow's failures
    become RegistryUnavailable."""

    def __init__(self, tracking_uri: str, budget: float) -> None:
        self.client = mlflow_client(tracking_uri)
        self.deadline = time.monotonic() + budget
        self.budget = budget

    def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        if time.monotonic() > self.deadline:
            raise RegistryUnavailable(
                f"MLflow answered too slowly: {what} was not started after "
                f"{self.budget:g} s", details="the API answers within API Gateway's 29 s")
        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise
            raise RegistryUnavailable(f"MLflow did not answer {what}",
                                      details=str(exc)[:2000]) from exc

    def pages(self, what: str, fn: Any, **kwargs: Any) -> list[Any]:
        found: list[Any] = []
        token = None
        while True:
            page = self.call(what, fn, page_token=token, **kwargs)
            found.extend(page)
            token = getattr(page, "token", None)
            if not token:
                return found


def _iso(millis: int | None) -> str | None:
    if not millis:
        return None
    return served.now_iso(datetime.fromtimestamp(int(millis) / 1000, UTC))


def _record(name: str, tags: dict[str, str], live: served.ServedVersion | None,
            ) -> dict[str, Any]:
    open_periods = [p for p in (live.periods if live else []) if p["to"] is None]
    return {"model_name": name,
            "serving_name": tags.get(SERVING_NAME_TAG) or derive_serving_name(name),
            "live_version": live.version if live else None,
            "inference_url": (live.inference_url or None) if live else None,
            "image_uri": (live.image_uri or None) if live else None,
            "target": (live.target or None) if live else None,
            "live_since": open_periods[-1]["from"] if open_periods else None,
            "deployment_id": (live.promoted_by or None) if live else None}


def _live_version(model: Any, alias: str) -> str | None:
    version = dict(getattr(model, "aliases", None) or {}).get(alias)
    return None if version is None else str(version)


def list_models(tracking_uri: str, alias: str, budget: float = BUDGET_SECONDS) -> ModelList:
    """The registered models trainship deployed whose alias points at a version, by name."""
    from mlflow.exceptions import MlflowException

    registry = _Registry(tracking_uri, budget)
    models = registry.pages(
        "the search for registered models", registry.client.search_registered_models,
        filter_string=f"tags.`{SERVING_NAME_TAG}` LIKE '%'", max_results=MODELS_PAGE,
        order_by=["name ASC"])
    records: list[ModelRecord] = []
    for model in models:
        version = _live_version(model, alias)
        if version is None:
            continue
        try:
            entity = registry.call(f"the version {model.name}/{version}",
                                   registry.client.get_model_version, model.name, version)
        except MlflowException:  # RESOURCE_DOES_NOT_EXIST: deleted since the search
            continue
        records.append(ModelRecord.model_validate(
            _record(model.name, dict(model.tags or {}), served.served_version(entity))))
    return ModelList(models=records)


def describe_model(tracking_uri: str, alias: str, model_name: str,
                   budget: float = BUDGET_SECONDS) -> ModelDetail:
    """A registered model, what of it serves, and every version newest first with the
    periods it served. ModelNotFound when the registry holds no such name."""
    problem = model_name_problem(model_name)
    if problem:
        raise ModelNotFound(f"No registered model {model_name!r}",
                            details=f"not a model name: {problem}")
    registry = _Registry(tracking_uri, budget)
    from mlflow.exceptions import MlflowException

    try:
        model = registry.call(f"the registered model {model_name}",
                              registry.client.get_registered_model, model_name)
    except MlflowException as exc:
        raise ModelNotFound(f"No registered model {model_name!r}",
                            details=str(exc)[:500]) from exc
    entities = registry.pages(
        f"the search for versions of {model_name}", registry.client.search_model_versions,
        filter_string=f"name = '{model_name}'", max_results=VERSIONS_PAGE)
    live = _live_version(model, alias)
    versions = sorted(entities, key=lambda v: int(v.version), reverse=True)
    by_version = {str(v.version): served.served_version(v) for v in versions}
    detail = _record(model_name, dict(model.tags or {}), by_version.get(live or ""))
    detail["versions"] = [VersionRecord.model_validate({
        "version": str(v.version), "live": str(v.version) == live,
        "created_at": _iso(getattr(v, "creation_timestamp", None)),
        "run_id": getattr(v, "run_id", None) or None,
        "image_uri": by_version[str(v.version)].image_uri or None,
        "served": [{"from": p["from"], "to": p.get("to"),
                    "deployment_id": p.get("deployment_id") or ""}
                   for p in by_version[str(v.version)].periods]}) for v in versions]
    return ModelDetail.model_validate(detail)
