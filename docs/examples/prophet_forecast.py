"""Prophet: a daily series with a weekly pattern (send with requirements ["prophet"])."""

import mlflow
import mlflow.prophet
import numpy as np
import pandas as pd
from prophet import Prophet

days = pd.date_range("2024-01-01", periods=120, freq="D")
rng = np.random.default_rng(0)
history = pd.DataFrame({
    "ds": days,
    "y": 10 + 0.05 * np.arange(120) + 2 * np.sin(2 * np.pi * np.arange(120) / 7)
         + rng.normal(scale=0.2, size=120)})

with mlflow.start_run():
    model = Prophet(daily_seasonality=False, yearly_seasonality=False).fit(history)
    future = model.make_future_dataframe(periods=7, include_history=False)
    mlflow.log_param("periods", 7)
    mlflow.prophet.log_model(model, name="model", input_example=future.head(3))
