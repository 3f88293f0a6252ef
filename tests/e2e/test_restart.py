"""State under the home directory survives `local down` / `local up`."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLES, deploy, post_json
from trainship.client import Client
from trainship.cluster.process import ProcessDriver
from trainship.local import stack

pytestmark = pytest.mark.e2e
ROW = {"dataframe_records": [{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5,
                              "petal length (cm)": 1.4, "petal width (cm)": 0.2}]}


def test_deployments_models_and_servers_survive_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    info: dict[str, Any] = stack.up(home)
    try:
        client = Client(info["api"])
        record = deploy(client, {"model_name": "survivor",
                                 "script": (EXAMPLES / "iris_sklearn.py").read_text()})
        assert record["status"] == "SUCCEEDED", record.get("error")
        url = record["result"]["inference_url"]
        status, body = post_json(f"{url}/invocations", {"inputs": [[5.1, 3.5, 1.4, 0.2]]})
        assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"  # needs names
        assert post_json(f"{url}/invocations", ROW)[0] == 200
    finally:
        assert stack.down(home)
    # down stops every server it started
    pids = [r["pid"] for r in ProcessDriver(home / "serving").records()]
    assert pids
    from trainship.procs import pid_alive

    assert not any(pid_alive(pid) for pid in pids)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/ping", timeout=2)

    info = stack.up(home)
    try:
        client = Client(info["api"])
        again = client.get(record["deployment_id"])
        assert again["status"] == "SUCCEEDED"
        assert again["result"]["inference_url"] == url
        assert record["deployment_id"] in [d["deployment_id"] for d in client.list()]
        # the model serves again at the same URL, and MLflow still has the registry
        status, body = post_json(f"{url}/invocations", ROW)
        assert status == 200 and body["predictions"] == [0]
        import mlflow

        versions = mlflow.MlflowClient(tracking_uri=info["mlflow"]).search_model_versions(
            "name='survivor'")
        assert [v.version for v in versions] == [record["result"]["model_version"]]
    finally:
        stack.down(home)
