"""State under the home directory survives `local down` / `local up`, in process and
container (podman) mode: one stack of its own serves a model per target; `down` stops every
server, proxy and pod it started; `up` serves both again at the same URLs, with their
records and the registry intact."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLES, post_json, wait_done
from trainship import containers
from trainship.client import Client
from trainship.cluster.process import ProcessDriver
from trainship.local import stack
from trainship.procs import pid_alive

pytestmark = pytest.mark.e2e
ROW = {"dataframe_records": [{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5,
                              "petal length (cm)": 1.4, "petal width (cm)": 0.2}]}
ROWS = {"dataframe_split": {
    "columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                "petal width (cm)"],
    "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}
MODELS = {"process": "survivor", "podman": "pod-survivor"}
POD = "pod-survivor-v1-pod-0"


def test_deployments_models_and_servers_survive_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    info: dict[str, Any] = stack.up(home)
    try:
        client = Client(info["api"])
        script = (EXAMPLES / "iris_sklearn.py").read_text()
        accepted = {target: client.submit({"model_name": name, "target": target,
                                           "script": script})
                    for target, name in MODELS.items()}  # both at once
        records = {target: wait_done(client, started["deployment_id"])
                   for target, started in accepted.items()}
        for record in records.values():
            assert record["status"] == "SUCCEEDED", record.get("error")
        urls = {target: record["result"]["inference_url"] for target, record in records.items()}
        status, body = post_json(f"{urls['process']}/invocations",
                                 {"inputs": [[5.1, 3.5, 1.4, 0.2]]})
        assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"  # needs names
        assert post_json(f"{urls['process']}/invocations", ROW)[0] == 200
        assert post_json(f"{urls['podman']}/invocations", ROWS) == (200, {"predictions": [0, 2]})
    finally:
        assert stack.down(home)
    try:
        # down stops every server it started, the models' proxies and the pod
        pids = [r["pid"] for r in ProcessDriver(home / "serving").records()]
        assert pids
        assert not any(pid_alive(pid) for pid in pids)
        for url in urls.values():
            with pytest.raises(OSError):
                urllib.request.urlopen(f"{url}/ping", timeout=2)
        assert containers.podman(home, "pod", "inspect", "--format", "{{.State}}",
                                 POD).stdout.strip() in ("Exited", "Stopped")

        info = stack.up(home)
        try:
            client = Client(info["api"])
            listed = [d["deployment_id"] for d in client.list()]
            for target, record in records.items():
                again = client.get(record["deployment_id"])
                assert again["status"] == "SUCCEEDED"
                assert again["result"]["inference_url"] == urls[target]
                assert record["deployment_id"] in listed
            # the models serve again at the same URLs, and MLflow still has the registry
            status, body = post_json(f"{urls['process']}/invocations", ROW)
            assert status == 200 and body["predictions"] == [0]
            assert post_json(f"{urls['podman']}/invocations", ROWS) == \
                (200, {"predictions": [0, 2]})
            import mlflow

            versions = mlflow.MlflowClient(tracking_uri=info["mlflow"]).search_model_versions(
                "name='survivor'")
            assert [v.version for v in versions] == [records["process"]["result"][
                "model_version"]]
        finally:
            stack.down(home)
    finally:
        containers.podman(home, "pod", "rm", "--force", POD, check=False)
