"""Secrets in environments and in what the API shows.

The training runner drops the variables named like secrets from the script's environment
(SECRET_ENV); the deployment records and build logs the API returns have the values of
this process's secret variables replaced (redact).
"""

from __future__ import annotations

import os
import re

# Variables the script never needs; removed from its environment (see docs/reliability).
SECRET_ENV = re.compile(
    r"^(AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|AWS_ACCESS_KEY_ID|AWS_CONTAINER_CREDENTIALS_.*|"
    r"MLFLOW_TRACKING_PASSWORD|MLFLOW_TRACKING_TOKEN|.*_SECRET.*|.*_PASSWORD)$")


def is_secret(name: str) -> bool:
    """Whether an environment variable's name is one of SECRET_ENV's."""
    return SECRET_ENV.match(name) is not None


REDACTED = "[REDACTED]"


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of this process's secret-looking variables (names as the training runner
    filters them), longest first."""
    env = os.environ if environ is None else environ
    return sorted({v for k, v in env.items() if is_secret(k) and len(v) >= 8},
                  key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with each of ``secrets`` replaced by [REDACTED]."""
    for value in secrets:
        text = text.replace(value, REDACTED)
    return text
