"""The flavor matrix: one example script per MLflow flavor, the requirements it is sent with,
and the input the e2e test (tests/e2e/test_flavors.py) posts to the deployed model.

docs/training-scripts.md shows this catalog as a table; a test checks the table's static
columns (flavor, example, requirements, mode) against it, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FRAME_F = {"dataframe_split": {"columns": ["f0", "f1", "f2", "f3"],
                               "data": [[0.5, -1.0, 1.5, 0.0], [-2.0, 0.3, 0.1, 1.2],
                                        [1.1, 1.1, -0.7, -0.4]]}}
TENSOR_4 = {"inputs": [[0.5, -1.0, 1.5, 0.0], [-2.0, 0.3, 0.1, 1.2]]}


@dataclass(frozen=True)
class Flavor:
    flavor: str                       # MLflow flavor, as the table shows it
    example: str                      # file name in docs/examples
    requirements: tuple[str, ...]     # the request's `requirements`
    payload: dict[str, Any]           # the body posted to /invocations
    container: bool = False           # also deployed with target "podman"
    dtype: str = "float64"            # for "inputs" payloads: the tensor's dtype
    datetime_columns: tuple[str, ...] = ()
    module: str = ""                  # the module the image must carry (container ones)
    # the output columns that must agree (all when empty); Prophet's yhat_lower/yhat_upper
    # come from random samples drawn at each prediction, so they differ call to call
    compare: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # for the test's own pyfunc load

    @property
    def model_name(self) -> str:
        return "flavor-" + self.example.removesuffix(".py").replace("_", "-")


CATALOG: tuple[Flavor, ...] = (
    Flavor("sklearn", "sklearn_random_forest.py", (), FRAME_F, container=True,
           module="sklearn"),
    Flavor("xgboost", "xgboost_classifier.py", ("xgboost-cpu",), FRAME_F),
    Flavor("lightgbm", "lightgbm_classifier.py", ("lightgbm",), FRAME_F),
    Flavor("catboost", "catboost_classifier.py", ("catboost",), FRAME_F),
    Flavor("statsmodels", "statsmodels_ols.py", ("statsmodels",),
           {"dataframe_split": {"columns": ["a", "b"],
                                "data": [[0.1, 0.2], [-1.0, 2.0], [3.0, 0.0]]}},
           container=True, module="statsmodels"),
    Flavor("pytorch", "pytorch_mlp.py", ("torch==2.13.0",), TENSOR_4, dtype="float32"),
    Flavor("keras", "keras_mlp.py", ("keras", "torch==2.13.0"), TENSOR_4, dtype="float32",
           env={"KERAS_BACKEND": "torch"}),
    Flavor("onnx", "onnx_linear.py", ("onnx", "onnxruntime", "skl2onnx"),
           {"inputs": [[0.5, -1.0, 1.5], [-2.0, 0.3, 0.1]]}, dtype="float32",
           container=True, module="onnxruntime"),
    Flavor("prophet", "prophet_forecast.py", ("prophet",),
           {"dataframe_split": {"columns": ["ds"],
                                "data": [["2024-04-30"], ["2024-05-01"], ["2024-05-02"]]}},
           datetime_columns=("ds",), compare=("yhat", "trend")),
    Flavor("python_function", "pyfunc_custom.py", (),
           {"dataframe_split": {"columns": ["x", "z"],
                                "data": [[1.0, 0.0], [2.5, -1.0], [0.0, 3.0]]}}),
)


def mode(flavor: Flavor) -> str:
    return "process, podman" if flavor.container else "process"


def requirements_cell(flavor: Flavor) -> str:
    return ", ".join(f"`{r}`" for r in flavor.requirements) or "(none)"
