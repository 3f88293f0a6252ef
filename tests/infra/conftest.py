from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import synth

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], Path]:
    return synth(tmp_path_factory.mktemp("cdk.out"))
