"""Model names: the MLflow registered-model name a user gives, and the serving name derived
from it for everything that needs a DNS-1123 label.

- ``model_name`` is the registered-model name exactly as written: letters, digits, ``_``,
  ``-`` and ``.``, starting with a letter or digit, no ``..``, at most
  ``MAX_MODEL_NAME_CHARS`` characters (``test_model``, ``customer_churn``, ``Iris.v2``).
- ``serving_name(model_name)`` is the name of its Kubernetes objects and labels, image
  tags, image pins, local proxies and driver records: lower case, ``_`` and ``.`` become
  ``-`` (``test_model`` -> ``test-model``), at most 63 characters (a longer one keeps a
  stable hash of the registered name as its suffix), starting with a letter (``m-`` is
  put before a leading digit: a Kubernetes Service name is a DNS-1035 label). A name
  that is already such a label is its own serving name, so ``serving_name`` is
  idempotent.

This module is the one place the serving name is derived; everything else imports it.
"""

from __future__ import annotations

import hashlib
import re

MAX_MODEL_NAME_CHARS = 128
MAX_SERVING_NAME_CHARS = 63
# JSON Schema draft 4 (API Gateway's model) and Python agree on this one: no lookaround,
# no flags. A dot is only ever followed by a non-dot, so ".." cannot occur; the first
# character is a letter or digit and the last is not a dot.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_-]|\.[A-Za-z0-9_-])*$"
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
_SERVING_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # DNS-1035: Service names
_HASH_CHARS = 8


def model_name_problem(name: str) -> str | None:
    """Why ``name`` is not an acceptable registered-model name, or None."""
    if not name:
        return "the model name is empty"
    if len(name) > MAX_MODEL_NAME_CHARS:
        return f"{len(name)} characters; the limit is {MAX_MODEL_NAME_CHARS}"
    if ".." in name:
        return "'..' is not allowed"
    if not _MODEL_NAME.fullmatch(name):
        return ("only letters, digits, '_', '-' and '.' are allowed, starting with a letter "
                "or digit and not ending with '.'")
    return None


def reserved_name_problem(name: str) -> str | None:
    """Why the images of model ``name`` would carry a tag trainship keeps for itself, or
    None: a version's tag is ``<serving name>-v<version>``, and one starting with ``live-``,
    ``previous-`` or ``buildcache-`` would be a mutable tag that the repository's lifecycle
    policy never expires or counts among the build caches. A new deployment is refused
    (trainship.request); a model deployed before the rule can still be rolled back,
    listed, deleted and have its token rotated (those take ``model_name_problem`` only)."""
    served = serving_name(name)
    for prefix in RESERVED_TAG_PREFIXES:
        if f"{served}-".startswith(prefix):
            return (f"its serving name {served!r} starts with {prefix!r}, a prefix "
                    "trainship's own image tags use (live-, previous-, buildcache-)")
    return None


def is_serving_name(name: str) -> bool:
    """A DNS-1123 label that also starts with a letter (a DNS-1035 label)."""
    return len(name) <= MAX_SERVING_NAME_CHARS and bool(_SERVING_NAME.fullmatch(name))


def serving_name(model_name: str) -> str:
    """The DNS-1123 label a registered-model name is served under (deterministic)."""
    if is_serving_name(model_name):
        return model_name
    base = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-") or "model"
    if not base[0].isalpha():
        base = f"m-{base}"
    if len(base) <= MAX_SERVING_NAME_CHARS:
        return base
    digest = hashlib.sha256(model_name.encode()).hexdigest()[:_HASH_CHARS]
    head = base[:MAX_SERVING_NAME_CHARS - _HASH_CHARS - 1].rstrip("-")
    return f"{head}-{digest}"


# The MLflow tag that binds a run (and its registered version) to the deployment that made it.
DEPLOYMENT_TAG = "trainship.deployment_id"

# Tags of the image repository that are trainship's own, beside a version's
# ``<serving name>-v<version>`` (trainship.image.context.image_tag): the image that serves a
# model and its rollback target (trainship.image_pins), and BuildKit's registry cache, one
# per dependency set (trainship/image/docker.py). The repository keeps them mutable and
# its lifecycle policy treats them apart (infra/repository.py), so no version's tag may
# start with one of them (``reserved_name_problem``).
LIVE_TAG_PREFIX = "live-"
PREVIOUS_TAG_PREFIX = "previous-"
CACHE_TAG_PREFIX = "buildcache-"
RESERVED_TAG_PREFIXES = (LIVE_TAG_PREFIX, PREVIOUS_TAG_PREFIX, CACHE_TAG_PREFIX)


# ECR's registry hosts: <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn], and the
# dual-stack <account>.dkr-ecr[-fips].<region>.on.aws (the image login, the image pins;
# buildspecs/install.sh spells the same hosts as shell patterns)
ECR_HOST = re.compile(r"^(?P<account>\d{12})\.(?:dkr\.ecr|dkr-ecr)(?:-fips)?\."
                      r"(?P<region>[a-z0-9-]+)\.(?:amazonaws\.com(?:\.cn)?|on\.aws)$")
