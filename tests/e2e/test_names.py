"""Names (issue 11) on the local stack: the original API's own test request deploys under
``model_name: "test_model"`` (registered as written, served as ``test-model``); a second
registered name with the same serving name is refused with ServingNameTaken while the
first keeps serving; bad names are 400s that start nothing."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import post_json, wait_done
from trainship.client import ApiError, Client
from trainship.registry import SERVING_NAME_TAG

pytestmark = pytest.mark.e2e

# The original API's test script (test_train.py): a RandomForest on iris, logged with
# mlflow.sklearn.log_model(model, "model") (MLflow 2 positional artifact path).
TEST_TRAIN = '''\
import mlflow
import mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

X, y = load_iris(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)

with mlflow.start_run():
    model = RandomForestClassifier(n_estimators=20, random_state=42)
    model.fit(X_train, y_train)
    accuracy = accuracy_score(y_test, model.predict(X_test))
    mlflow.log_param("n_estimators", 20)
    mlflow.log_metric("accuracy", accuracy)
    mlflow.sklearn.log_model(model, "model")
    print(f"Model trained with accuracy: {accuracy}")
'''
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]]


def original_request(model_name: str) -> dict[str, Any]:
    """The body `encode_script.py test_train.py --deploy --model-name test_model` built:
    the script base64 in script_content, with the original tool's defaults."""
    return {"model_name": model_name,
            "script_content": base64.b64encode(TEST_TRAIN.encode()).decode(),
            "experiment_name": "default",
            "requirements": ["scikit-learn", "pandas", "numpy"],
            "timeout": 300, "replicas": 2}


def mlflow_client(local_stack: dict[str, Any]) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=local_stack["mlflow"],
                               registry_uri=local_stack["mlflow"])


@pytest.fixture(scope="module")
def test_model(api: Client) -> dict[str, Any]:
    accepted = api.request("POST", "/mlops/deploy", original_request("test_model"))
    record = wait_done(api, accepted["deployment_id"])
    assert record["status"] == "SUCCEEDED", record.get("error")
    return record


def predictions(url: str) -> list[Any]:
    status, body = post_json(f"{url}/invocations", {"inputs": ROWS})
    assert status == 200, body
    answer: list[Any] = body["predictions"]
    return answer


def test_the_original_test_request_deploys_as_test_model(
        test_model: dict[str, Any], local_stack: dict[str, Any], local_home: Path) -> None:
    import mlflow

    result = test_model["result"]
    assert result["model_name"] == "test_model"
    assert result["serving_name"] == "test-model"
    # registered under exactly the name the user wrote, tagged with its serving name
    client = mlflow_client(local_stack)
    registered = client.get_registered_model("test_model")
    assert registered.tags[SERVING_NAME_TAG] == "test-model"
    version = client.get_model_version("test_model", result["model_version"])
    assert version.run_id == result["run_id"]
    assert client.get_experiment(
        client.get_run(result["run_id"]).info.experiment_id).name == "default"
    # the image tag and the driver's records use the serving name
    assert ":test-model-v" in result["image_uri"]
    records = sorted((local_home / "serving" / "test-model").glob("v*.json"))
    assert records, list((local_home / "serving").iterdir())
    # its URL answers as the registered model predicts
    mlflow.set_tracking_uri(local_stack["mlflow"])
    model = mlflow.pyfunc.load_model(f"models:/test_model/{result['model_version']}")
    expected = [int(v) for v in model.predict(np.array(ROWS))]
    assert predictions(result["inference_url"]) == expected
    assert set(expected) <= {0, 1, 2}


@pytest.mark.parametrize("second", ["test.model", "Test_Model"])
def test_a_second_name_with_the_same_serving_name_is_refused(
        test_model: dict[str, Any], api: Client, local_stack: dict[str, Any],
        second: str) -> None:
    first_url = test_model["result"]["inference_url"]
    before = predictions(first_url)
    accepted = api.request("POST", "/mlops/deploy", original_request(second))
    record = wait_done(api, accepted["deployment_id"])
    assert record["status"] == "FAILED"
    doc = record["error"]
    assert doc["error"] == "ServingNameTaken", doc
    assert doc["step"] == "RegisterModel"
    assert "'test_model'" in doc["help"] and "test-model" in doc["message"]
    steps = [s["name"] for s in record["steps"]]
    assert "BuildImage" not in steps and "DeployModel" not in steps  # nothing half-deployed
    # no registered model (so no version) under the refused name
    client = mlflow_client(local_stack)
    assert second not in {m.name for m in client.search_registered_models(
        filter_string=f"name = '{second}'")}
    # the first keeps serving at the same URL, and is still the live version
    assert predictions(first_url) == before
    assert client.get_registered_model("test_model").tags[SERVING_NAME_TAG] == "test-model"


@pytest.mark.parametrize("fields, in_details", [
    ({"model_name": "test model"}, "model_name"),
    ({"model_name": "team/model"}, "model_name"),
    ({"model_name": "a..b"}, "'..'"),
    ({"model_name": ""}, "empty"),
    ({"model_name": "bad\x00name"}, "model_name"),
    ({"model_name": "bad\nname"}, "model_name"),
    ({"model_name": "m" * 129}, "the limit is 128"),
    ({"model_name": "test_model", "experiment_name": "exp\x00"}, "U+0000"),
    ({"model_name": "test_model", "experiment_name": "two\nlines"}, "U+000A"),
])
def test_bad_names_are_400_and_start_nothing(api: Client, fields: dict[str, str],
                                             in_details: str) -> None:
    before = len(api.list())
    body = {**original_request("test_model"), **fields}
    for path in ("/deployments", "/mlops/deploy"):
        with pytest.raises(ApiError) as caught:
            api.request("POST", path, body)
        assert caught.value.status == 400
        doc = caught.value.document
        assert doc["error"] == "InvalidRequest"
        assert in_details in doc["details"], doc["details"]
        assert '"model_name"' in doc["help"]  # an example body
    assert len(api.list()) == before
