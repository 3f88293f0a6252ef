"""A custom mlflow.pyfunc.PythonModel: no framework, no requirements."""

import mlflow
import mlflow.pyfunc
import pandas as pd


class Scaler(mlflow.pyfunc.PythonModel):
    """A weighted sum of the inputs, with weights fitted at training time."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = weights

    def predict(self, context, model_input, params=None):
        return sum(model_input[name] * weight for name, weight in self.weights.items())


data = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "z": [0.5, 0.25, 0.0, -0.5]})
weights = {"x": float(data["x"].mean()), "z": 2.0}

with mlflow.start_run():
    mlflow.log_params(weights)
    mlflow.pyfunc.log_model(name="model", python_model=Scaler(weights),
                            input_example=data.head(3))
