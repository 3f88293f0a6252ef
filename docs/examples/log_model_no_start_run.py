"""log_model with no start_run at all: the model still lands in the bound run."""

import mlflow
import mlflow.sklearn
from sklearn.datasets import load_wine
from sklearn.ensemble import GradientBoostingClassifier

X, y = load_wine(return_X_y=True)
model = GradientBoostingClassifier(n_estimators=20).fit(X, y)
mlflow.log_param("n_estimators", 20)
mlflow.sklearn.log_model(model, name="model")
