"""The service starts with the cyclic GC off and serves with it on, the start-up frozen."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trainship.serving import workers


def test_workers_serve_with_the_collector_on_and_the_start_up_frozen(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def run_worker(model: Any, *args: Any, **kwargs: Any) -> None:
        seen.update(enabled=gc.isenabled(), frozen=gc.get_freeze_count())

    monkeypatch.setattr(workers, "load", lambda model_dir, cache: object())
    monkeypatch.setattr(workers, "run_worker", run_worker)
    gc.disable()  # as python -m trainship.serving starts
    try:
        assert workers.serve(tmp_path, "127.0.0.1", 0, workers=1) == 0
    finally:
        gc.unfreeze()
        gc.enable()
    assert seen["enabled"] is True
    assert seen["frozen"] > 10_000  # this test process's modules and objects


def test_the_entry_point_turns_the_collector_off_before_importing_the_service() -> None:
    code = ("import gc, runpy, sys\n"
            "sys.argv = ['trainship.serving', '--help']\n"
            "import trainship.serving.cli as cli\n"
            "cli.main = lambda argv: print('enabled', gc.isenabled()) or 0\n"
            "runpy.run_module('trainship.serving', run_name='__main__')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "enabled False" in out.stdout, out.stderr
