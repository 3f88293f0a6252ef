"""scikit-learn: a random forest on a synthetic classification problem (no download)."""

import mlflow
import mlflow.sklearn
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

X, y = make_classification(n_samples=300, n_features=4, n_informative=3, n_redundant=0,
                           random_state=0)
X = pd.DataFrame(X, columns=["f0", "f1", "f2", "f3"])

with mlflow.start_run():
    model = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0).fit(X, y)
    mlflow.log_metric("accuracy", model.score(X, y))
    mlflow.sklearn.log_model(model, name="model", input_example=X.head(3))
