"""MLflow 3 style: a logistic regression on iris, with a signature and an input example."""

import mlflow
import mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

X, y = load_iris(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=42)

with mlflow.start_run():  # trainship binds this to the run it created for the deployment
    model = LogisticRegression(max_iter=500).fit(X_train, y_train)
    mlflow.log_param("max_iter", 500)
    mlflow.log_metric("accuracy", model.score(X_test, y_test))
    mlflow.sklearn.log_model(model, name="model", input_example=X_test.head(3))
