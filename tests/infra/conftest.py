from __future__ import annotations

import pytest

from tests.infra.helpers import Synth, synth


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synth(tmp_path_factory.mktemp("cdk.out"))
