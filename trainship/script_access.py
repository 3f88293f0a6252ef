"""What the user's training script may do on AWS: the role it gets and its session policy.

The training runner (build role) assumes the script role with a session policy scoped
to one deployment; infra/ grants the role no more than MLFLOW_SCRIPT_ACTIONS.
"""

from __future__ import annotations

# The sagemaker-mlflow actions logging a run and a model needs (refined by the
# credentials work; infra imports this list).
MLFLOW_SCRIPT_ACTIONS: tuple[str, ...] = ()
