"""`make demo`: start the local stack, deploy the example script, show a prediction."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

from trainship.client import Client
from trainship.config import CliSettings
from trainship.local import stack
from trainship.terminal import wait_for

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "iris_sklearn.py"
ROWS = {"dataframe_split": {
    "columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                "petal width (cm)"],
    "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}


def main() -> int:
    print("starting the local stack (MLflow, Step Functions, API) ...", flush=True)
    info = stack.up(CliSettings.from_env().home)
    print(f"API: {info['api']}\nMLflow UI: {info['mlflow']}\n"
          f"Step Functions: {info['stepfunctions']}", flush=True)
    if info.get("console"):
        print(f"Console: {info['console']}", flush=True)
    client = Client(info["api"])
    accepted = client.submit({"model_name": "iris-demo", "script": EXAMPLE.read_text()})
    print(f"deploying {EXAMPLE.name} as iris-demo: deployment {accepted['deployment_id']}",
          flush=True)
    record = wait_for(client, accepted["deployment_id"], progress=True)
    if record["status"] != "SUCCEEDED":
        print(json.dumps(record.get("error"), indent=2), file=sys.stderr)
        return 1
    result = record["result"]
    request = urllib.request.Request(f"{result['inference_url']}/invocations",
                                     data=json.dumps(ROWS).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        prediction = json.loads(response.read())
    print(f"\nmodel:          {result['model_name']} version {result['model_version']}")
    print(f"deployed in:    {result['deployment_time_seconds']} s")
    print(f"Inference URL:  {result['inference_url']}")
    print(f"Prediction:     {json.dumps(prediction)}  (for {ROWS['dataframe_split']['data']})")
    print(f"\ntry it:  curl -s -H 'Content-Type: application/json' "
          f"-d '{json.dumps(ROWS)}' {result['inference_url']}/invocations")
    if info.get("console"):
        print(f"watch:   {info['console']}/deployments/{accepted['deployment_id']}")
    print("stop:    .venv/bin/trainship local down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
