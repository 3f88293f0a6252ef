"""XGBoost (send with requirements ["xgboost-cpu"]: the same xgboost module, without the
NVIDIA NCCL wheel that the plain "xgboost" package pulls on Linux)."""

import mlflow
import mlflow.xgboost
import pandas as pd
import xgboost as xgb
from sklearn.datasets import make_classification

X, y = make_classification(n_samples=300, n_features=4, n_informative=3, n_redundant=0,
                           random_state=0)
X = pd.DataFrame(X, columns=["f0", "f1", "f2", "f3"])

with mlflow.start_run():
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(X, y)
    mlflow.log_metric("accuracy", float((model.predict(X) == y).mean()))
    mlflow.xgboost.log_model(model, name="model", input_example=X.head(3))
