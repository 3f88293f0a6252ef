"""What the console shows, fetched through the stack's public surfaces only: the API
(trainship.client.Client), Step Functions (the execution's history) and MLflow's REST API
(the run, the model version, its input example). The server (trainship.console.server)
asks a ``ConsoleData`` for typed views; the pages (trainship.console.pages) render them."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Protocol

from trainship import token_store
from trainship.client import ApiError, Client
from trainship.console import history
from trainship.console.graph import StateRun
from trainship.console.history import StateDetail
from trainship.pipeline import ASL_PATH

RECENT = 20  # deployments on the home page
FAILURE_CONTEXT = 20  # log lines either side of the failure
TRY_TIMEOUT = 60.0
BUILD_HEADER = re.compile(r"^===== (?P<step>\S+) build (?P<build>\S+) \((?P<status>.*)\) =====$")
FAILURE_MARK = re.compile(r"Traceback|Error|error:|FAILED|Failed")


class DeploymentNotFound(Exception):
    """The API knows no deployment of that id (its 404)."""


@dataclass(frozen=True)
class DeploymentRow:
    deployment_id: str
    status: str
    started_at: str | None
    stopped_at: str | None
    model_name: str | None = None
    version: str | None = None
    current_step: str | None = None


@dataclass(frozen=True)
class ModelRow:
    model_name: str
    live_version: str | None
    inference_url: str | None
    target: str | None = None
    deployment_id: str | None = None


@dataclass(frozen=True)
class HomeView:
    deployments: Sequence[DeploymentRow]
    models: Sequence[ModelRow]
    mlflow_url: str


@dataclass(frozen=True)
class MlflowView:
    run_id: str | None
    run_url: str | None
    model_name: str | None
    model_version: str | None
    version_url: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentView:
    record: Mapping[str, Any]  # the API's record (trainship.records.RecordJson)
    definition: Mapping[str, Any]  # the state machine's ASL
    runs: Mapping[str, StateRun]
    mlflow_url: str
    model_name: str | None = None
    logs: Mapping[str, str] = field(default_factory=dict)  # state name -> its build log
    failure_logs: str = ""
    mlflow: MlflowView | None = None
    input_example: str | None = None  # the request body for /invocations


@dataclass(frozen=True)
class StatusView:
    status: str
    definition: Mapping[str, Any]
    runs: Mapping[str, StateRun]


@dataclass(frozen=True)
class TryResult:
    status: int  # the model's HTTP status (502: the model could not be reached)
    body: str


class ConsoleData(Protocol):
    """What the server needs; StackData fetches it from a stack, tests inject fakes."""

    def home(self) -> HomeView: ...

    def deployment(self, deployment_id: str) -> DeploymentView: ...

    def status(self, deployment_id: str) -> StatusView: ...

    def state_details(self, deployment_id: str, state: str) -> list[StateDetail] | None:
        """Each entry of the state; None when the execution's history is gone."""
        ...

    def try_it(self, deployment_id: str, body: bytes) -> TryResult: ...


@cache
def asl_definition() -> dict[str, Any]:
    """The state machine, from the ASL file itself (the one the stacks deploy)."""
    data: dict[str, Any] = json.loads(ASL_PATH.read_text())
    return data


def split_logs(text: str) -> dict[str, str]:
    """GET /deployments/{id}/logs's text (a header line per build, then the error document)
    as each state's build log; a state built twice (a redrive) keeps its last log."""
    logs: dict[str, str] = {}
    step: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        match = BUILD_HEADER.match(line)
        if match or line == "===== error =====":
            if step is not None:
                logs[step] = "\n".join(lines)
            step, lines = (match["step"] if match else None), []
        elif step is not None:
            lines.append(line)
    if step is not None:
        logs[step] = "\n".join(lines)
    return logs


MLFLOW_PROBE_SECONDS = 2.0


def mlflow_reachable(tracking_uri: str) -> bool:
    """Whether the tracking server answers HTTP at all (any status: the stack's gate may
    refuse an unsigned request) within MLFLOW_PROBE_SECONDS."""
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health",
                                    timeout=MLFLOW_PROBE_SECONDS):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def tail(text: str, lines: int = 200) -> str:
    return "\n".join(text.splitlines()[-lines:])


def failure_lines(logs: Mapping[str, str], step: str | None,
                  context: int = FAILURE_CONTEXT) -> str:
    """The log lines around the failure: in the failed state's own build log, those around
    the first traceback or error line from the end; the tail when no line looks like one;
    "" when the failed state has no build log (a Lambda step: its error document says it,
    and another step's log would mislead)."""
    text = logs.get(step or "") or ""
    lines = text.splitlines()
    marks = [i for i, line in enumerate(lines) if FAILURE_MARK.search(line)]
    if not marks:
        return "\n".join(lines[-2 * context:])
    # the first mark of the last block of marks: where the traceback starts
    first = marks[-1]
    for i in reversed(marks[:-1]):
        if first - i > context:
            break
        first = i
    return "\n".join(lines[max(0, first - context):marks[-1] + context + 1])


def runs_from_steps(record: Mapping[str, Any]) -> dict[str, StateRun]:
    """The graph's colours from the record's steps, when the execution's history is gone
    (moto keeps executions in memory: a restarted stack has only the archived records)."""
    runs: dict[str, StateRun] = {}
    running = record.get("status") == "RUNNING"
    for step in record.get("steps") or []:
        status = {"SUCCEEDED": "succeeded", "FAILED": "failed"}.get(
            str(step.get("status")), "running" if running else "failed")
        old = runs.get(step["name"])
        seconds = step.get("seconds")
        total = (old.seconds or 0) + seconds if old and seconds is not None else seconds
        runs[step["name"]] = StateRun(status=status,  # type: ignore[arg-type]
                                      entered=(old.entered + 1) if old else 1,
                                      seconds=total, retries=0)
    return runs


def run_id_from_events(events: Sequence[Mapping[str, Any]]) -> str | None:
    """The MLflow run a training build was bound to (train.yml exports MLFLOW_RUN_ID; the
    build result, or a failed build's cause, carries Build.ExportedEnvironmentVariables):
    the run of a deployment that failed after training started."""
    for event in reversed(events):
        details = (event.get("taskSucceededEventDetails")
                   or event.get("taskFailedEventDetails") or {})
        if details.get("resourceType") != "codebuild":
            continue
        try:
            build = json.loads(details.get("output") or details.get("cause") or "{}")
        except ValueError:
            continue
        build = build.get("Build", build) if isinstance(build, dict) else {}
        for variable in build.get("ExportedEnvironmentVariables") or []:
            if variable.get("Name") == "MLFLOW_RUN_ID" and variable.get("Value"):
                return str(variable["Value"])
    return None


def step_of(record: Mapping[str, Any]) -> str | None:
    """The home page's step: where a running deployment is, where a failed one failed."""
    if record.get("status") == "RUNNING":
        return record.get("current_step")
    error = record.get("error") or {}
    return error.get("step") if isinstance(error, Mapping) else None


def _invocations(inference_url: str) -> str:
    return inference_url.rstrip("/") + "/invocations"


class StackData:
    """A stack's data: the API at ``api_url``, Step Functions from ``sfn`` (a boto3
    client factory), MLflow's UI links under ``mlflow_url`` and its REST API at
    ``tracking_uri`` (default: ``mlflow_url``)."""

    def __init__(self, api_url: str, sfn: Callable[[], Any], mlflow_url: str,
                 tracking_uri: str | None = None) -> None:
        self.client = Client(api_url)
        self.sfn = sfn
        self.mlflow_url = mlflow_url.rstrip("/")
        self.tracking_uri = tracking_uri or mlflow_url

    # --- the API ------------------------------------------------------------------------

    def _record(self, deployment_id: str) -> dict[str, Any]:
        try:
            return dict(self.client.get(deployment_id))
        except ApiError as exc:
            if exc.status == 404:
                raise DeploymentNotFound(deployment_id) from None
            raise

    def _events(self, record: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """The execution's history events (boto3's shape), None when it is gone."""
        arn = record.get("execution_arn")
        if not arn:
            return None
        client = self.sfn()
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
        try:
            while True:
                page = client.get_execution_history(**kwargs)
                events.extend(page["events"])
                if not page.get("nextToken"):
                    return events
                kwargs["nextToken"] = page["nextToken"]
        except Exception:  # noqa: BLE001 - ExecutionDoesNotExist after a restart, no SFN
            return None

    def _runs(self, record: Mapping[str, Any]) -> tuple[dict[str, StateRun],
                                                        list[dict[str, Any]] | None]:
        events = self._events(record)
        # a running state's time counts up to now (boto3's timestamps are timezone-aware)
        return (history.state_runs(events, now=datetime.now(UTC)) if events
                else runs_from_steps(record)), events

    def _model_name(self, record: Mapping[str, Any]) -> str | None:
        result = record.get("result") or {}
        if result.get("model_name"):
            return str(result["model_name"])
        arn = record.get("execution_arn")
        if not arn:
            return None
        try:
            given = json.loads(self.sfn().describe_execution(executionArn=arn)["input"])
        except Exception:  # noqa: BLE001 - the execution is gone (a restarted stack)
            return None
        name = given.get("model_name") if isinstance(given, dict) else None
        return str(name) if name else None

    def home(self) -> HomeView:
        rows = []
        for brief in self.client.list()[:RECENT]:
            try:
                record: Mapping[str, Any] = self._record(brief["deployment_id"])
            except (DeploymentNotFound, ApiError):
                record = dict(brief)
            result = record.get("result") or {}
            rows.append(DeploymentRow(
                deployment_id=brief["deployment_id"], status=str(record["status"]),
                started_at=record.get("started_at"), stopped_at=record.get("stopped_at"),
                model_name=self._model_name(record),
                version=(str(result["model_version"]) if result.get("model_version")
                         else None),
                current_step=step_of(record)))
        models = [ModelRow(model_name=m["model_name"], live_version=m.get("live_version"),
                           inference_url=m.get("inference_url"), target=m.get("target"),
                           deployment_id=m.get("deployment_id"))
                  for m in self.client.models()]
        return HomeView(rows, models, self.mlflow_url)

    def deployment(self, deployment_id: str) -> DeploymentView:
        record = self._record(deployment_id)
        runs, events = self._runs(record)
        try:
            logs = split_logs(self.client.logs(deployment_id))
        except ApiError:
            logs = {}
        error = record.get("error") or {}
        failure = failure_lines(logs, error.get("step")) if record["status"] != "SUCCEEDED" \
            and error else ""
        result = record.get("result") or {}
        model_name = self._model_name(record)
        if not result.get("run_id") and events:  # failed: the run training was bound to
            result = {"run_id": run_id_from_events(events), "model_name": model_name}
        # MLflow's client retries for minutes when the server is down (its defaults): ask
        # it only when it answers at all, so the page comes without those parts instead
        mlflow_up = mlflow_reachable(self.tracking_uri)
        mlflow_view = self._mlflow(result, ask=mlflow_up)
        example = None
        if record["status"] == "SUCCEEDED" and result.get("inference_url") and mlflow_up:
            example = self._input_example(result)
        return DeploymentView(
            record=record, definition=asl_definition(), runs=runs,
            mlflow_url=self.mlflow_url, model_name=model_name,
            logs={step: tail(text) for step, text in logs.items()},
            failure_logs=failure, mlflow=mlflow_view, input_example=example)

    def status(self, deployment_id: str) -> StatusView:
        record = self._record(deployment_id)
        runs, _ = self._runs(record)
        return StatusView(str(record["status"]), asl_definition(), runs)

    def state_details(self, deployment_id: str, state: str) -> list[StateDetail] | None:
        record = self._record(deployment_id)
        events = self._events(record)
        # no events: the execution's history is gone (moto keeps it in memory only)
        return history.state_details(events, state) if events else None

    # --- MLflow -------------------------------------------------------------------------

    def _mlflow(self, result: Mapping[str, Any], *, ask: bool = True) -> MlflowView | None:
        run_id, name = result.get("run_id"), result.get("model_name")
        version = result.get("model_version")
        if not run_id:
            return None
        version_url = (f"{self.mlflow_url}/#/models/{urllib.parse.quote(str(name))}/versions/"
                       f"{urllib.parse.quote(str(version))}" if name and version else None)
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        run_url = None
        if run_id and ask:
            try:
                from mlflow.tracking import MlflowClient

                run = MlflowClient(tracking_uri=self.tracking_uri).get_run(str(run_id))
                metrics = dict(run.data.metrics)
                params = dict(run.data.params)
                run_url = (f"{self.mlflow_url}/#/experiments/{run.info.experiment_id}/runs/"
                           f"{run_id}")
            except Exception:  # noqa: BLE001 - MLflow unreachable: the page without them
                run_url = None
        return MlflowView(run_id=str(run_id) if run_id else None, run_url=run_url,
                          model_name=str(name) if name else None,
                          model_version=str(version) if version else None,
                          version_url=version_url, metrics=metrics, params=params)

    def _input_example(self, result: Mapping[str, Any]) -> str | None:
        """The model's logged serving input example: the body for /invocations."""
        from trainship import registry

        try:
            example = registry.serving_input_example(
                str(result["model_name"]), str(result["model_version"]), self.tracking_uri)
        except Exception:  # noqa: BLE001 - MLflow unreachable: the form starts empty
            return None
        return json.dumps(example, indent=2) if example is not None else None

    # --- the model ----------------------------------------------------------------------

    def try_it(self, deployment_id: str, body: bytes) -> TryResult:
        """POST the body to the deployed model's /invocations, with the model's token
        when the CLI's token store holds one for its URL (trainship.token_store)."""
        record = self._record(deployment_id)
        url = (record.get("result") or {}).get("inference_url")
        if record["status"] != "SUCCEEDED" or not url:
            return TryResult(409, json.dumps({"error": "NotServing", "message":
                                              "this deployment has no inference URL"}))
        headers = {"Content-Type": "application/json"}
        try:
            token = token_store.load(str(url))
        except (OSError, ValueError):
            token = None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(_invocations(str(url)), data=body, method="POST",
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TRY_TIMEOUT) as response:
                return TryResult(int(response.status), response.read().decode("utf-8",
                                                                              "replace"))
        except urllib.error.HTTPError as exc:
            return TryResult(int(exc.code), exc.read().decode("utf-8", "replace"))
        except OSError as exc:
            return TryResult(502, json.dumps({"error": "ModelUnreachable",
                                              "message": f"cannot reach {url}: {exc}"}))
