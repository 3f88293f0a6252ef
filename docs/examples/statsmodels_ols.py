"""statsmodels: an ordinary least squares fit with the formula API (send with requirements
["statsmodels"])."""

import mlflow
import mlflow.statsmodels
import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

rng = np.random.default_rng(0)
data = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
data["y"] = 1.5 + 2.0 * data["a"] - 0.5 * data["b"] + rng.normal(scale=0.1, size=200)

with mlflow.start_run():
    results = smf.ols("y ~ a + b", data=data).fit()
    mlflow.log_metric("rsquared", float(results.rsquared))
    mlflow.statsmodels.log_model(results, name="model", input_example=data[["a", "b"]].head(3))
