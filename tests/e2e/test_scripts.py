"""Training scripts as users write them, on the local stack: requirements (installed once,
then cached), MLflow 3's run-less ``log_model``, the user's own frames in a failure, and
the bad scripts that each end with their own error name (docs/training-scripts.md)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EXAMPLES, deploy, post_json
from trainship.client import Client

pytestmark = pytest.mark.e2e

IRIS_ROWS = {"dataframe_split": {
    "columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                "petal width (cm)"],
    "data": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]]}}
IRIS = (EXAMPLES / "iris_sklearn.py").read_text()
TRAIN_IRIS = """\
import mlflow
import mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

X, y = load_iris(return_X_y=True, as_frame=True)
"""


def mlflow_client(local_stack: dict[str, Any]) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=local_stack["mlflow"])


def assert_serves_the_registered_model(record: dict[str, Any], local_stack: dict[str, Any]
                                       ) -> None:
    """The HTTP prediction equals the registered version's, loaded from MLflow."""
    import mlflow
    import pandas as pd

    result = record["result"]
    status, body = post_json(f"{result['inference_url']}/invocations", IRIS_ROWS)
    assert status == 200, body
    mlflow.set_tracking_uri(local_stack["mlflow"])
    model = mlflow.pyfunc.load_model(f"models:/{result['model_name']}/{result['model_version']}")
    split = IRIS_ROWS["dataframe_split"]
    expected = model.predict(pd.DataFrame(split["data"], columns=split["columns"]))
    assert body["predictions"] == [int(v) for v in expected]


def registered_logged_model(record: dict[str, Any], local_stack: dict[str, Any]) -> Any:
    client = mlflow_client(local_stack)
    result = record["result"]
    version = client.get_model_version(result["model_name"], result["model_version"])
    assert result["model_uri"].startswith("models:/m-"), result
    model_id = result["model_uri"].removeprefix("models:/")
    assert model_id in version.source, version
    return version, client.get_logged_model(model_id)


def build_log(record: dict[str, Any], step: str) -> Path:
    [build] = [b for b in record["builds"] if b["step"] == step]
    return Path(urllib.parse.unquote(urllib.parse.urlparse(build["logs"]["DeepLink"]).path))


# --- 1. requirements -------------------------------------------------------------------

def test_a_script_with_requirements_deploys_and_the_same_requirements_install_once(
        api: Client, local_stack: dict[str, Any], local_home: Path) -> None:
    requirements = ["six>=1.15,<2"]
    script = "import six\n" + TRAIN_IRIS + (
        "with mlflow.start_run():\n"
        "    mlflow.log_param('six_version', six.__version__)\n"
        "    model = LogisticRegression(max_iter=500).fit(X, y)\n"
        "    mlflow.sklearn.log_model(model, name='model', input_example=X.head(3))\n")
    envs = local_home / "envs"
    before = {p.parent.name for p in envs.glob("*/.complete")}

    first = deploy(api, {"model_name": "requirements-e2e", "script": script,
                         "requirements": requirements})
    assert first["status"] == "SUCCEEDED", first.get("error")
    logs = api.logs(first["deployment_id"])
    assert "installing requirements into" in logs and "six" in logs
    built = [p.parent for p in envs.glob("*/.complete")
             if p.parent.name not in before]
    assert len(built) == 1, built
    env_dir = built[0]
    assert (env_dir / "requirements.txt").read_text().split() == requirements
    complete = (env_dir / ".complete").stat().st_mtime_ns
    run = mlflow_client(local_stack).get_run(first["result"]["run_id"])
    assert run.data.params["six_version"]  # the script imported the requirement
    assert_serves_the_registered_model(first, local_stack)

    second = deploy(api, {"model_name": "requirements-e2e", "script": script,
                          "requirements": list(reversed(requirements))})
    assert second["status"] == "SUCCEEDED", second.get("error")
    logs = api.logs(second["deployment_id"])
    assert f"requirements environment {env_dir.name} is cached: nothing to install" in logs
    assert "installing requirements" not in logs
    assert (env_dir / ".complete").stat().st_mtime_ns == complete
    assert {p.parent.name for p in envs.glob("*/.complete")} == before | {env_dir.name}
    assert int(second["result"]["model_version"]) == int(first["result"]["model_version"]) + 1


@pytest.mark.parametrize(("requirements", "pip_says"), [
    (["trainship-surely-no-such-package==0.0.1"],
     "No matching distribution found for trainship-surely-no-such-package"),
    (["six==1.16.0", "six==1.15.0"], "ResolutionImpossible"),
], ids=["no-such-package", "conflict"])
def test_requirements_pip_cannot_resolve(api: Client, requirements: list[str],
                                         pip_says: str) -> None:
    record = deploy(api, {"model_name": "unresolvable-e2e", "script": IRIS,
                          "requirements": requirements})
    assert record["status"] == "FAILED"
    doc = record["error"]
    assert (doc["error"], doc["step"]) == ("RequirementsInstallFailed", "TrainModel"), doc
    assert pip_says in doc["details"], doc["details"]
    assert doc["help"] and all(r in doc["message"] for r in requirements)
    assert "RegisterModel" not in [s["name"] for s in record["steps"]]


# --- 2. MLflow 3: log_model with no run --------------------------------------------------

def test_log_model_with_no_run_at_all_deploys(api: Client, local_stack: dict[str, Any]
                                              ) -> None:
    """No start_run and no other fluent call: MLflow 3 logs a LoggedModel with no source
    run. It is registered (as the deployment's run's model) and served."""
    script = TRAIN_IRIS + (
        "model = LogisticRegression(max_iter=500).fit(X, y)\n"
        "mlflow.sklearn.log_model(model, name='model', input_example=X.head(3))\n"
        "assert mlflow.active_run() is None  # MLflow 3 never started one\n")
    record = deploy(api, {"model_name": "run-less-e2e", "script": script})
    assert record["status"] == "SUCCEEDED", record.get("error")
    version, logged = registered_logged_model(record, local_stack)
    assert not logged.source_run_id and logged.name == "model"
    assert logged.tags["trainship.deployment_id"] == record["deployment_id"]
    run_id = record["result"]["run_id"]
    assert version.run_id == run_id
    run = mlflow_client(local_stack).get_run(run_id)
    assert [o.model_id for o in run.outputs.model_outputs] == [logged.model_id]
    assert_serves_the_registered_model(record, local_stack)


# --- 3. the user's frames ----------------------------------------------------------------

def test_a_failed_script_shows_the_users_frames(api: Client) -> None:
    script = TRAIN_IRIS + (
        "\n\ndef train(data):\n"
        "    return data['no such column']\n"
        "\n\ntrain(X)\n")
    record = deploy(api, {"model_name": "frames-e2e", "script": script})
    doc = record["error"]
    assert (doc["error"], doc["step"]) == ("ScriptFailed", "TrainModel"), doc
    assert "KeyError: 'no such column'" in doc["message"]
    frames = [line.strip() for line in doc["details"].splitlines()
              if line.strip().startswith("File ")]
    assert frames[:2] == ['File "train.py", line 14, in <module>',
                          'File "train.py", line 11, in train'], doc["details"]
    assert "runpy.py" not in doc["details"] and "bootstrap.py" not in doc["details"]


# --- 4. which model is deployed ------------------------------------------------------------

def test_of_two_models_the_one_named_model_deploys(api: Client, local_stack: dict[str, Any]
                                                   ) -> None:
    script = TRAIN_IRIS + (
        "with mlflow.start_run():\n"
        "    tree = DecisionTreeClassifier(max_depth=1).fit(X, y)\n"
        "    mlflow.sklearn.log_model(tree, name='baseline')\n"
        "    model = LogisticRegression(max_iter=500).fit(X, y)\n"
        "    mlflow.sklearn.log_model(model, name='model', input_example=X.head(3))\n")
    record = deploy(api, {"model_name": "two-models-e2e", "script": script})
    assert record["status"] == "SUCCEEDED", record.get("error")
    _, logged = registered_logged_model(record, local_stack)
    assert logged.name == "model"
    assert_serves_the_registered_model(record, local_stack)


@pytest.mark.parametrize("run", ["with mlflow.start_run():\n", "if True:  # no run\n"],
                         ids=["in-a-run", "run-less"])
def test_two_models_and_none_named_model_is_multiple_models_logged(api: Client, run: str
                                                                    ) -> None:
    script = TRAIN_IRIS + run + (
        "    tree = DecisionTreeClassifier(max_depth=1).fit(X, y)\n"
        "    mlflow.sklearn.log_model(tree, name='tree')\n"
        "    model = LogisticRegression(max_iter=500).fit(X, y)\n"
        "    mlflow.sklearn.log_model(model, name='logreg')\n")
    record = deploy(api, {"model_name": "ambiguous-e2e", "script": script})
    assert record["status"] == "FAILED"
    doc = record["error"]
    assert (doc["error"], doc["step"]) == ("MultipleModelsLogged", "RegisterModel"), doc
    assert "tree (models:/m-" in doc["details"] and "logreg (models:/m-" in doc["details"]
    assert 'name="model"' in doc["help"]
    assert "DeployModel" not in [s["name"] for s in record["steps"]]


def test_a_single_model_under_another_name_deploys(api: Client, local_stack: dict[str, Any]
                                                   ) -> None:
    script = TRAIN_IRIS + (
        "with mlflow.start_run():\n"
        "    model = LogisticRegression(max_iter=500).fit(X, y)\n"
        "    mlflow.sklearn.log_model(model, name='iris_classifier')\n")
    record = deploy(api, {"model_name": "other-name-e2e", "script": script})
    assert record["status"] == "SUCCEEDED", record.get("error")
    _, logged = registered_logged_model(record, local_stack)
    assert logged.name == "iris_classifier"
    assert_serves_the_registered_model(record, local_stack)


# --- 4. output of hundreds of MB ------------------------------------------------------------

def test_hundreds_of_mb_of_output_are_capped_and_the_deployment_succeeds(
        api: Client, local_stack: dict[str, Any]) -> None:
    from trainship.local.codebuild import MAX_BUILD_LOG_CHARS
    from trainship.training import KEPT_TAIL_CHARS, STREAM_HEAD_CHARS

    flood = ("import sys\n"
             "line = 'epoch loss 0.123456 ' * 50 + '\\n'\n"
             "block = line * 1000\n"
             "for _ in range(300):  # about 300 MB in lines\n"
             "    sys.stdout.write(block)\n"
             "sys.stdout.write('p' * (20 << 20) + '\\n')  # and one 20 MB line\n"
             "print('flood over', flush=True)\n")
    record = deploy(api, {"model_name": "loud-e2e", "script": flood + IRIS})
    assert record["status"] == "SUCCEEDED", record.get("error")
    log = build_log(record, "TrainModel")
    size = log.stat().st_size
    assert size < STREAM_HEAD_CHARS + KEPT_TAIL_CHARS + (1 << 20), size
    assert size < MAX_BUILD_LOG_CHARS
    logs = api.logs(record["deployment_id"])
    assert "the script's output passed" in logs and "were not kept" in logs
    assert "flood over" in logs  # the end of the output is kept
    assert "Phase complete: BUILD State: SUCCEEDED" in logs
    assert_serves_the_registered_model(record, local_stack)
