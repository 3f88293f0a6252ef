"""PyTorch (CPU): a small MLP regression (send with requirements ["torch==2.13.0"]; a bare
"torch" may resolve to a multi-GB CUDA build)."""

import mlflow
import mlflow.pytorch
import numpy as np
import torch
from torch import nn

torch.manual_seed(0)
rng = np.random.default_rng(0)
X = rng.normal(size=(256, 4)).astype(np.float32)
y = (X @ np.array([1.0, -1.0, 0.5, 2.0], dtype=np.float32))[:, None]

model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
for _ in range(100):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(torch.from_numpy(X)), torch.from_numpy(y))
    loss.backward()
    optimizer.step()
model.eval()

with mlflow.start_run():
    mlflow.log_metric("mse", float(loss))
    mlflow.pytorch.log_model(model, name="model", input_example=X[:3])
