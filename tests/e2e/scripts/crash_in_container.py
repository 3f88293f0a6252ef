"""A model that trains and registers fine but whose server dies as soon as it loads the
model inside the image (/opt/model): a crash-looping second version."""

from pathlib import Path

import mlflow
import mlflow.pyfunc


class CrashesInImage(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        if Path("/opt/model/MLmodel").exists():
            raise RuntimeError("deliberate crash while loading the model in the container")

    def predict(self, context, model_input, params=None):
        return [0] * len(model_input)


with mlflow.start_run():
    mlflow.pyfunc.log_model(name="model", python_model=CrashesInImage())
