"""What the user's training script may do on AWS: the role it gets and its session policy.

The training runner (build role) assumes the script role with a session policy scoped
to one deployment; infra/ grants the role no more than MLFLOW_SCRIPT_ACTIONS.

Action names: Service Authorization Reference, "Actions, resources, and condition keys
for Amazon SageMaker with MLflow" (service prefix sagemaker-mlflow). Every action there
takes the mlflow-tracking-server resource only: IAM cannot scope a call to one run or
experiment, so these actions reach the whole tracking server (docs/reliability.md).
"""

from __future__ import annotations

# What `mlflow.start_run()` (attaching to MLFLOW_RUN_ID), metric/param/tag logging and
# MLflow 3 `log_model` (a LoggedModel: create, log params/tags, upload, finalize, link
# to the run as an output) call. The reference lists no CreateLoggedModel action:
# MLflow's POST /logged-models is authorised as LogModel. No registry writes
# (CreateRegisteredModel, CreateModelVersion, aliases), no Delete*, no CreateRun /
# CreateExperiment (the runner creates both before the script starts).
MLFLOW_SCRIPT_ACTIONS: tuple[str, ...] = tuple(f"sagemaker-mlflow:{name}" for name in (
    "GetExperiment",
    "GetExperimentByName",
    "GetRun",
    "UpdateRun",
    "LogMetric",
    "LogParam",
    "LogBatch",
    "LogInputs",
    "LogOutputs",
    "SetTag",
    "GetMetricHistory",
    "ListArtifacts",
    "LogModel",
    "GetLoggedModel",
    "FinalizeLoggedModel",
    "SetLoggedModelTags",
    "LogLoggedModelParams",
    "ListLoggedModelArtifacts",
))
