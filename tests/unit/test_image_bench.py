"""bench/image_bench.py's accounting: what a new version adds is the layers the registry
did not have, counted by digest (a registry stores a layer once)."""

from __future__ import annotations

from bench.image_bench import new_bytes


def test_only_layers_missing_from_the_previous_image_count() -> None:
    v1 = {"sha256:base": 100, "sha256:venv": 50, "sha256:model-1": 3}
    v2 = {"sha256:base": 100, "sha256:venv": 50, "sha256:model-2": 4, "sha256:meta-2": 1}
    assert new_bytes(v1, v2) == (5, 2)
    assert new_bytes(v1, v1) == (0, 0)
    assert new_bytes({}, v2) == (155, 4)
