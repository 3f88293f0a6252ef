"""LightGBM (send with requirements ["lightgbm"])."""

import lightgbm as lgb
import mlflow
import mlflow.lightgbm
import pandas as pd
from sklearn.datasets import make_classification

X, y = make_classification(n_samples=300, n_features=4, n_informative=3, n_redundant=0,
                           random_state=0)
X = pd.DataFrame(X, columns=["f0", "f1", "f2", "f3"])

with mlflow.start_run():
    model = lgb.LGBMClassifier(n_estimators=20, num_leaves=8, n_jobs=1, verbose=-1).fit(X, y)
    mlflow.log_metric("accuracy", float((model.predict(X) == y).mean()))
    mlflow.lightgbm.log_model(model, name="model", input_example=X.head(3))
