"""Requirements environments: a venv per set of requirements, cached by their hash.

The training runner runs the script with one (trainship.training); the process driver
serves the model with the same one (trainship.cluster.process), so a model's
dependencies are installed once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import site
import subprocess
import sys
from pathlib import Path

from trainship.errors import RequirementsInstallFailed, tail

# The requirements are installed for the script first: their errors are the training step's.
STEP = "TrainModel"


def env_key(requirements: list[str]) -> str:
    canonical = "\n".join(sorted(r.strip() for r in requirements))
    # the interpreter's prefix too: a venv inherits that interpreter's packages
    return hashlib.sha256(f"{sys.version_info[:2]}\n{sys.prefix}\n{canonical}".encode()
                          ).hexdigest()[:16]


def inherit_site_packages(python: Path) -> None:
    """Let a requirements venv see this interpreter's packages (MLflow above all).

    ``venv --system-site-packages`` exposes the *base* interpreter's site-packages; when the
    runner itself runs in a virtual environment (the local stack, a pip-installed CLI),
    MLflow lives in that environment's site-packages instead, which the new venv would not
    see. A .pth file appends them after the venv's own, so the requirements still win.
    """
    own = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    inherited = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(own, "_trainship_inherited.pth").write_text("\n".join(inherited) + "\n")


def prepare_environment(requirements: list[str], cache_dir: Path) -> str:
    """The python to run the script with: the base one, or a cached venv with the extras."""
    if not requirements:
        return sys.executable
    env_dir = cache_dir / env_key(requirements)
    python = env_dir / "bin" / "python"
    if (env_dir / ".complete").exists():
        print(f"[trainship] requirements environment {env_dir.name} is cached: nothing to "
              f"install", flush=True)
        return str(python)
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = cache_dir / f"{env_dir.name}.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if (env_dir / ".complete").exists():  # built by a concurrent deployment meanwhile
            print(f"[trainship] requirements environment {env_dir.name} is cached: nothing "
                  f"to install", flush=True)
            return str(python)
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--clear",
                        str(env_dir)], check=True, capture_output=True)
        inherit_site_packages(python)
        req_file = env_dir / "requirements.txt"
        req_file.write_text("\n".join(requirements) + "\n")
        print(f"[trainship] installing requirements into {env_dir.name}: {requirements}",
              flush=True)
        try:
            proc = subprocess.run([str(python), "-m", "pip", "install",
                                   "--disable-pip-version-check", "--no-input", "-r",
                                   str(req_file)],
                                  capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired as exc:
            raise RequirementsInstallFailed(
                f"pip did not install {requirements} within {exc.timeout:.0f} s",
                details=tail(str(exc.stderr or exc.stdout or "")), step=STEP) from exc
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n", flush=True)
        if proc.returncode != 0:
            raise RequirementsInstallFailed(
                f"pip could not install {requirements}",
                details=tail(proc.stderr or proc.stdout), step=STEP)
        (env_dir / ".complete").write_text(json.dumps(requirements))
    return str(python)
