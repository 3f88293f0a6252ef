"""Keras 3 on the PyTorch backend (send with requirements ["keras", "torch==2.13.0"]).

KERAS_BACKEND must be set before keras is imported. MLflow records the backend in the
model's MLmodel (keras_backend); trainship's inference service sets it from there.
"""

import os

os.environ["KERAS_BACKEND"] = "torch"

import keras
import mlflow
import mlflow.keras
import numpy as np

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
X = rng.normal(size=(256, 4)).astype(np.float32)
y = X @ np.array([1.0, -1.0, 0.5, 2.0], dtype=np.float32)

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
history = model.fit(X, y, epochs=10, batch_size=32, verbose=0)

# MLflow 3.17's mlflow.keras.save_model writes the input example before it creates the
# model directory (FileNotFoundError .../model/input_example.json): create it first.
_save_model = mlflow.keras.save_model


def save_model(*args, path, **kwargs):
    os.makedirs(path, exist_ok=True)
    return _save_model(*args, path=path, **kwargs)


mlflow.keras.save_model = save_model

with mlflow.start_run():
    mlflow.log_metric("loss", float(history.history["loss"][-1]))
    mlflow.keras.log_model(model, name="model", input_example=X[:3])
