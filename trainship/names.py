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

# The image repository's tags for BuildKit's registry cache, one per dependency set
# (trainship/image/docker.py); the repository keeps them mutable and counts them apart
# (infra/repository.py).
CACHE_TAG_PREFIX = "buildcache-"


# ECR's registry hosts: <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn], and the
# dual-stack <account>.dkr-ecr[-fips].<region>.on.aws (the image login, the image pins;
# buildspecs/install.sh spells the same hosts as shell patterns)
ECR_HOST = re.compile(r"^(?P<account>\d{12})\.(?:dkr\.ecr|dkr-ecr)(?:-fips)?\."
                      r"(?P<region>[a-z0-9-]+)\.(?:amazonaws\.com(?:\.cn)?|on\.aws)$")
