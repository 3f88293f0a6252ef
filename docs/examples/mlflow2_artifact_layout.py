"""The layout MLflow 2 clients produce: the model as a run artifact folder named "model".

(An MLflow 2 client writes this with `mlflow.sklearn.log_model(model, artifact_path="model")`;
here the same layout is written with save_model + log_artifacts so it runs on MLflow 3.)
"""

import tempfile

import mlflow
import mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

X, y = load_iris(return_X_y=True)
model = DecisionTreeClassifier(max_depth=3).fit(X, y)
with mlflow.start_run(), tempfile.TemporaryDirectory() as tmp:
    mlflow.sklearn.save_model(model, f"{tmp}/model", serialization_format="cloudpickle")
    mlflow.log_artifacts(f"{tmp}/model", artifact_path="model")
