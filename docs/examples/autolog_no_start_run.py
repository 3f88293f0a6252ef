"""Autologging, no explicit start_run: trainship's run binding still catches the model."""

import mlflow
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

mlflow.sklearn.autolog()
X, y = load_diabetes(return_X_y=True)
Ridge(alpha=0.5).fit(X, y)
