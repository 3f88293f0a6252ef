"""CatBoost (send with requirements ["catboost"])."""

import mlflow
import mlflow.catboost
import pandas as pd
from catboost import CatBoostClassifier
from sklearn.datasets import make_classification

X, y = make_classification(n_samples=300, n_features=4, n_informative=3, n_redundant=0,
                           random_state=0)
X = pd.DataFrame(X, columns=["f0", "f1", "f2", "f3"])

with mlflow.start_run():
    # train_dir: CatBoost writes its training files to the working directory otherwise
    model = CatBoostClassifier(iterations=30, depth=3, thread_count=1, verbose=False,
                               allow_writing_files=False).fit(X, y)
    mlflow.log_metric("accuracy", float(model.score(X, y)))
    mlflow.catboost.log_model(model, name="model", input_example=X.head(3))
