"""The image context: the registered model from MLflow, its requirements, the inference
service and the Dockerfile.

``assemble_context`` downloads the model and writes the image's metadata (every builder);
``prepare_container_context`` adds what a container build needs (podman, docker).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from trainship.errors import ImageBuildFailed, tail
from trainship.image.base import STEP
from trainship.names import serving_name
from trainship.serving import REQUIREMENTS as SERVICE_REQUIREMENTS
from trainship.serving.model_spec import SPEC_FILE, write_spec
from trainship.state import DeploymentState

METADATA = "trainship-image.json"
PACKAGE = Path(__file__).resolve().parents[1]  # trainship/
IMAGE_FILES = PACKAGE / "image_files"
SERVICE_MODULES = ("__init__.py", "serving/*.py")  # the service imports nothing else
PYFUNC_SERVING_NEEDS = ("numpy", "pandas")


def image_tag(model_name: str, version: str) -> str:
    """``<serving name>-v<version>``: an image tag allows no upper case (trainship.names)."""
    return f"{serving_name(model_name)}-v{version}"


def assemble_context(state: DeploymentState, tracking_uri: str, context: Path) -> None:
    # MLflow is heavy: only the image step itself downloads a model
    import mlflow
    from mlflow.artifacts import download_artifacts

    assert state.model is not None
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    model_dir = context / "model"
    download_artifacts(artifact_uri=f"models:/{state.model.name}/{state.model.version}",
                       dst_path=str(model_dir))
    if not (model_dir / "MLmodel").exists():
        raise ImageBuildFailed(f"models:/{state.model.name}/{state.model.version} has no "
                               "MLmodel file", step=STEP)
    (context / METADATA).write_text(json.dumps({
        "model_name": state.model.name,
        "model_version": state.model.version,
        "model_uri": state.model.model_uri,
        "run_id": state.model.run_id,
        "requirements": state.requirements,
        "deployment_id": state.deployment_id,
    }, indent=2, sort_keys=True))
    # the model's own API (GET /openapi.json, /docs), from its signature and input example
    write_spec(model_dir, context / SPEC_FILE, title=state.model.name,
               version=state.model.version)


def service_requirements() -> list[str]:
    """What the service itself imports (trainship.serving.REQUIREMENTS), each pinned to the
    version installed beside trainship: ``make venv`` and the buildspecs install from
    requirements.lock, so that is the locked version (tests/unit/test_lock.py checks the
    lock against pyproject). A requirement whose installed version it does not allow, or
    that is not installed, is kept as written."""
    out = []
    for text in SERVICE_REQUIREMENTS:
        requirement = Requirement(text)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            out.append(text)
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            out.append(text)
            continue
        out.append(f"{canonicalize_name(requirement.name)}=={installed}"
                   + (f"; {requirement.marker}" if requirement.marker else ""))
    return out


def serving_requirements(model_dir: Path) -> list[str]:
    """The model's requirements (its MLmodel environment files) for the serving venv:
    ``mlflow`` becomes ``mlflow-skinny`` of the same version (no tracking server, UI or
    their dependencies), plus numpy and pandas when the model does not pin them: pyfunc
    scoring imports both, and full mlflow is what brought them. The model's own lines are
    kept as the model wrote them (no lock applies to them: a user's pin wins)."""
    path = model_dir / "requirements.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    out: list[str] = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            out.append(text)
            continue
        if requirement.name.lower() == "mlflow":
            requirement.name = "mlflow-skinny"
            requirement.extras = set()
        out.append(str(requirement))
    names = {Requirement(r).name.lower() for r in out}
    if "mlflow-skinny" not in names:
        # the running MLflow's version (mlflow.version imports all of mlflow: heavy)
        from mlflow.version import VERSION

        out.append(f"mlflow-skinny=={VERSION}")
    # what full mlflow brings and pyfunc serving imports (skinny leaves them out)
    out += [name for name in PYFUNC_SERVING_NEEDS if name not in names]
    # what the service itself imports (prometheus_client), unless the model pins it
    canonical = {canonicalize_name(name) for name in names}
    out += [r for r in service_requirements()
            if canonicalize_name(Requirement(r).name) not in canonical]
    return out


def prepare_container_context(context: Path, *, wheels: str) -> str:
    """Add the Dockerfile, the service and the requirements to an assembled context;
    return the pip options for the build (``--no-index`` when the wheels are included)."""
    shutil.copy(IMAGE_FILES / "Dockerfile", context / "Dockerfile")
    (context / ".dockerignore").write_text("**/__pycache__\n")
    service = context / "trainship"
    service.mkdir()
    for pattern in SERVICE_MODULES:
        for module in PACKAGE.glob(pattern):
            target = service / module.relative_to(PACKAGE)
            target.parent.mkdir(exist_ok=True)
            shutil.copy(module, target)
    requirements = serving_requirements(context / "model")
    (context / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (context / "wheels").mkdir()
    if wheels != "host":
        return ""
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                           "--disable-pip-version-check", "--only-binary=:all:",
                           "-r", str(context / "requirements.txt"), "-d",
                           str(context / "wheels")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageBuildFailed("Could not download the model's requirements for the image",
                               details=tail(proc.stdout + proc.stderr), step=STEP,
                               help="Every requirement must be installable as a wheel for "
                                    "the image's platform; pin versions that publish wheels.")
    return "--no-index"
