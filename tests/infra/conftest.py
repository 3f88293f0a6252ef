from __future__ import annotations

import pytest

from tests.infra.helpers import VARIANT, Synth, synth


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synth(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """An existing tracking server in a VPC, arm64 nodes, an internal load balancer."""
    return synth(tmp_path_factory.mktemp("variant"), **VARIANT)
