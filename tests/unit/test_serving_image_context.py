"""The image ships the serving package alone (with trainship/__init__.py): everything the
service imports must be in it, and its own requirements go into the image's venv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from trainship.image import prepare_container_context
from trainship.serving import REQUIREMENTS

SERVING = Path(__file__).resolve().parents[2] / "trainship" / "serving"


def test_the_context_holds_the_package_and_its_requirements(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "requirements.txt").write_text("mlflow==3.17.2\n")
    assert prepare_container_context(tmp_path, wheels="builder") == ""
    shipped = {p.relative_to(tmp_path / "trainship").as_posix()
               for p in (tmp_path / "trainship").rglob("*.py")}
    assert shipped == {"__init__.py"} | {f"serving/{p.name}" for p in SERVING.glob("*.py")}
    requirements = (tmp_path / "requirements.txt").read_text().splitlines()
    assert set(REQUIREMENTS) <= set(requirements)
    # every module of the service imports from the shipped files alone (and the venv)
    modules = [f"trainship.serving.{p.stem}" for p in SERVING.glob("*.py")
               if p.stem not in ("__init__", "__main__")]
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\n" \
           "assert all(not m.startswith('trainship.') or m.startswith('trainship.serving')" \
           " for m in sys.modules), sorted(m for m in sys.modules if m.startswith('trainship'))"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code, *modules], env=env, cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
