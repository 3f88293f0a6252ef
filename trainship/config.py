"""Runtime settings read from the environment.

The same handlers run on AWS and on the local stack; what differs (where scripts are
staged, which MLflow, which cluster driver) is configuration injected here, never an
``if local:`` branch in a handler.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str) -> bool:
    """A boolean environment variable: unset, empty, 0, false, no and off (any case, spaces
    around ignored) are false; any other value is true (``TRAINSHIP_DEBUG=0`` is off)."""
    return os.environ.get(name, "").strip().lower() not in FALSE_WORDS


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class Settings:
    staging_uri: str
    tracking_uri: str
    cluster: str
    model_alias: str
    rollout_timeout_seconds: int
    rollout_poll_seconds: int
    state_machine_arn: str
    archive_dir: str
    home: Path
    targets: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("TRAINSHIP_HOME", ".trainship")).resolve()
        return cls(
            staging_uri=os.environ.get("TRAINSHIP_STAGING_URI", str(home / "staging")),
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
            cluster=os.environ.get("TRAINSHIP_CLUSTER", "process"),
            model_alias=os.environ.get("TRAINSHIP_MODEL_ALIAS", "live"),
            rollout_timeout_seconds=_int("TRAINSHIP_ROLLOUT_TIMEOUT_SECONDS", 600),
            rollout_poll_seconds=_int("TRAINSHIP_ROLLOUT_POLL_SECONDS", 10),
            state_machine_arn=os.environ.get("STATE_MACHINE_ARN", ""),
            archive_dir=os.environ.get("TRAINSHIP_ARCHIVE_DIR", ""),
            home=home,
            targets=tuple(t for t in os.environ.get("TRAINSHIP_TARGETS", "").split(",") if t)
            or (os.environ.get("TRAINSHIP_CLUSTER", "process"),),
        )

    def driver_name(self, target: str) -> str:
        """The cluster driver of a deployment: its target, or this stack's default."""
        return target or self.cluster


# --- CLI ---

@dataclass(frozen=True)
class CliSettings:
    """What the ``trainship`` command line (and ``make demo``) reads from the environment."""

    api: str  # TRAINSHIP_API: the API's base URL; empty: the local stack
    debug: bool  # TRAINSHIP_DEBUG: an internal error shows its traceback
    home: Path  # TRAINSHIP_HOME: the local stack's state directory (as given, not resolved)

    @classmethod
    def from_env(cls) -> CliSettings:
        return cls(api=os.environ.get("TRAINSHIP_API", ""), debug=env_flag("TRAINSHIP_DEBUG"),
                   home=Path(os.environ.get("TRAINSHIP_HOME", ".trainship")))
