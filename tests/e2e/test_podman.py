"""Container mode end to end: the image is built with podman from the Dockerfile, pushed to
the local registry, played as the Kubernetes Deployment, and served at a stable URL; a
second version that crash-loops leaves the first one answering at that URL throughout.
(A podman model surviving `local down` / `local up` is in test_restart.py.)"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from tests.helpers import EXAMPLES, deploy, post_json
from trainship import containers
from trainship.cluster.podman import container_name
from trainship.names import serving_name

pytestmark = pytest.mark.e2e
SCRIPTS = Path(__file__).resolve().parent / "scripts"
# A registered-model name that is not a DNS-1123 label: container mode names its pods,
# image tags and records by the serving name (trainship.names), MLflow by the name as written.
MODEL = "Iris_Podman"
SERVING = serving_name(MODEL)  # iris-podman
ROWS = {"dataframe_split": {
    "columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                "petal width (cm)"],
    "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}


def registry_digest(registry: str, repository: str, tag: str) -> str:
    """The manifest digest the registry serves for a tag (what a pull by digest gets)."""
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}", method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                           "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.headers["Docker-Content-Digest"])


def test_container_tools_are_installed() -> None:
    # `make test` installs them (apt); a missing tool must fail here, not skip
    assert containers.missing_tools() == []


@pytest.fixture(scope="module")
def first_version(api: Any, local_home: Path) -> Iterator[dict[str, Any]]:
    record = deploy(api, {"model_name": MODEL, "target": "podman",
                          "script": (EXAMPLES / "iris_sklearn.py").read_text()})
    assert record["status"] == "SUCCEEDED", json.dumps(record.get("error"), indent=2)
    yield dict(record["result"])
    containers.podman(local_home, "pod", "rm", "--force", f"{SERVING}-v1-pod-0", check=False)


def test_image_is_built_pushed_and_served(first_version: dict[str, Any], local_home: Path
                                          ) -> None:
    image = first_version["image_uri"]
    reference, _, digest = image.partition("@")
    registry, _, rest = reference.partition("/")
    repository, _, tag = rest.partition(":")
    assert registry.startswith("127.0.0.1:") and tag == f"{SERVING}-v1"
    assert (first_version["model_name"], first_version["serving_name"]) == (MODEL, SERVING)
    assert (local_home / "podman" / SERVING / "v1.json").exists()
    # the registry serves the pushed tag with the digest the deployment recorded
    assert registry_digest(registry, repository, tag) == digest
    status, body = post_json(f"{first_version['inference_url']}/invocations", ROWS)
    assert (status, body) == (200, {"predictions": [0, 2]})
    # the running container: non-root, read-only root filesystem, the image's healthcheck
    info = json.loads(containers.podman(local_home, "inspect",
                                        container_name(MODEL, "1")).stdout)[0]
    assert info["Config"]["User"].startswith("10001")
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    image_info = json.loads(containers.podman(local_home, "image", "inspect",
                                              reference).stdout)[0]
    assert image_info["Config"]["User"] == "10001:10001"
    assert "/ping" in " ".join(image_info["Healthcheck"]["Test"])
    # only what serving needs: no MLflow tracking server, no compilers in the image
    listing = containers.podman(local_home, "run", "--rm", "--entrypoint", "sh", reference, "-c",
                                "ls /opt/venv/lib/python3*/site-packages; "
                                "command -v gcc cc || true").stdout
    assert "mlflow_skinny" in listing and "sqlalchemy" not in listing.lower()
    assert "flask" not in listing.lower() and "/gcc" not in listing


def test_crashing_second_version_leaves_the_first_serving(
        api: Any, first_version: dict[str, Any], local_stack: dict[str, Any],
        local_home: Path) -> None:
    url = f"{first_version['inference_url']}/invocations"
    answers: list[tuple[int, Any]] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            answers.append(post_json(url, ROWS))
            stop.wait(0.2)

    poller = threading.Thread(target=keep_asking, daemon=True)
    poller.start()
    try:
        record = deploy(api, {"model_name": MODEL, "target": "podman",
                              "script": (SCRIPTS / "crash_in_container.py").read_text()})
    finally:
        stop.set()
        poller.join(10)
    assert record["status"] == "FAILED"
    error = record["error"]
    assert error["error"] == "RolloutFailed" and error["step"] == "CheckRollout"
    assert "CrashLoopBackOff" in error["message"] or "exited" in error["message"]
    assert "deliberate crash" in error["details"]  # the container's last log lines
    # the first version answered every request during the failed rollout, at the same URL
    assert len(answers) > 20
    assert all(answer == (200, {"predictions": [0, 2]}) for answer in answers), \
        [a for a in answers if a[0] != 200][:3]
    assert post_json(url, ROWS) == (200, {"predictions": [0, 2]})
    # the registry's alias stays on the last good version
    client = MlflowClient(local_stack["mlflow"])
    assert client.get_model_version_by_alias(MODEL, "live").version == "1"
    # and the failed version's pod is gone
    proc = containers.podman(local_home, "pod", "exists", f"{SERVING}-v2-pod-0", check=False)
    assert proc.returncode != 0

