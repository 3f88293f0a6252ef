"""What served, where and when: MLflow model-version tags written when a version goes live.

The registry is the one record of what trainship serves (the API lists models, rolls back
and deletes from it, on AWS as locally):

- the alias (``TRAINSHIP_MODEL_ALIAS``, ``live``) points at the version that serves; a
  model with no alias serves nothing (never promoted, or deleted);
- each version that ever went live carries its image, URL, target and the deployment that
  put it there, and ``trainship.served``: the periods it served, as JSON
  ``[{"from": ISO, "to": ISO or null, "deployment_id": ID}]`` (a rollback opens a second
  period on an earlier version).

MLflow keeps model-version tag values up to 5000 characters in older servers (100 000 in
MLflow 3.x, ``MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH``); a period is about 90, and the oldest
periods are dropped to stay under the smaller limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, cast

IMAGE_TAG = "trainship.image_uri"
URL_TAG = "trainship.inference_url"
TARGET_TAG = "trainship.target"
PROMOTED_BY_TAG = "trainship.promoted_by"
SERVED_TAG = "trainship.served"
TAG_VALUE_LIMIT = 5000


# ISO 8601 UTC; ``to`` is None while the version serves ("from" is a keyword: functional form)
Period = TypedDict("Period", {"from": str, "to": str | None, "deployment_id": str})


@dataclass(frozen=True)
class ServedVersion:
    """One registered version as it served (or never did: ``periods`` empty)."""

    version: str
    image_uri: str
    inference_url: str
    target: str
    promoted_by: str
    periods: list[Period]

    @property
    def ever_served(self) -> bool:
        return bool(self.periods)


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def periods_of(tags: dict[str, str]) -> list[Period]:
    try:
        value = json.loads(tags.get(SERVED_TAG) or "[]")
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    return [cast(Period, p) for p in value if isinstance(p, dict) and "from" in p]


def served_version(version: Any) -> ServedVersion:
    """A model version entity (MlflowClient) read as a ServedVersion."""
    tags: dict[str, str] = dict(version.tags or {})
    return ServedVersion(version=str(version.version), image_uri=tags.get(IMAGE_TAG, ""),
                         inference_url=tags.get(URL_TAG, ""), target=tags.get(TARGET_TAG, ""),
                         promoted_by=tags.get(PROMOTED_BY_TAG, ""), periods=periods_of(tags))


def _encode(periods: list[Period]) -> str:
    text = json.dumps(periods, separators=(",", ":"))
    while len(text) > TAG_VALUE_LIMIT and len(periods) > 1:
        periods = periods[1:]
        text = json.dumps(periods, separators=(",", ":"))
    return text


def mark_live(client: Any, *, model_name: str, version: str, image_uri: str,
              inference_url: str, target: str, deployment_id: str,
              now: datetime | None = None) -> None:
    """Record that ``version`` serves from now (its image, URL, target, deployment) and
    close the open period of every other version of the model."""
    when = now_iso(now)
    entity = client.get_model_version(model_name, version)
    periods = periods_of(dict(entity.tags or {}))
    if not periods or periods[-1]["to"] is not None:
        periods.append({"from": when, "to": None, "deployment_id": deployment_id})
    for key, value in ((IMAGE_TAG, image_uri), (URL_TAG, inference_url), (TARGET_TAG, target),
                       (PROMOTED_BY_TAG, deployment_id), (SERVED_TAG, _encode(periods))):
        client.set_model_version_tag(model_name, version, key, value)
    retire_others(client, model_name, keep=version, now=now)


def mark_retired(client: Any, model_name: str, version: str,
                 now: datetime | None = None) -> None:
    """Close the open serving period of ``version`` (it no longer serves)."""
    entity = client.get_model_version(model_name, version)
    periods = periods_of(dict(entity.tags or {}))
    if periods and periods[-1]["to"] is None:
        periods[-1]["to"] = now_iso(now)
        client.set_model_version_tag(model_name, version, SERVED_TAG, _encode(periods))


def retire_others(client: Any, model_name: str, *, keep: str | None,
                  now: datetime | None = None) -> None:
    """Close the open period of every version but ``keep`` (None: all of them)."""
    for entity in client.search_model_versions(f"name = '{model_name}'"):
        if str(entity.version) == keep:
            continue
        periods = periods_of(dict(entity.tags or {}))
        if periods and periods[-1]["to"] is None:
            mark_retired(client, model_name, str(entity.version), now)


def versions(client: Any, model_name: str) -> list[ServedVersion]:
    """Every registered version of the model, newest first."""
    found = [served_version(v) for v in client.search_model_versions(f"name = '{model_name}'")]
    return sorted(found, key=lambda v: int(v.version), reverse=True)
