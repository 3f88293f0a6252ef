"""ONNX: a scikit-learn linear model converted with skl2onnx, served by onnxruntime (send
with requirements ["onnx", "onnxruntime", "skl2onnx"])."""

import mlflow
import mlflow.onnx
import numpy as np
from skl2onnx import to_onnx
from sklearn.linear_model import LinearRegression

rng = np.random.default_rng(0)
X = rng.normal(size=(200, 3)).astype(np.float32)
y = X @ np.array([1.0, -2.0, 0.5], dtype=np.float32) + 0.3

model = LinearRegression().fit(X, y)
onnx_model = to_onnx(model, X[:1], target_opset=17)

with mlflow.start_run():
    mlflow.log_metric("r2", float(model.score(X, y)))
    mlflow.onnx.log_model(onnx_model, name="model", input_example=X[:3])
