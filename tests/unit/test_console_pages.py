"""The console's pages rendered from views (trainship.console.pages: pure): the ids and
classes the browser tests rely on (docs/console.md), a failed deployment's error first,
everything escaped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from trainship.console import pages
from trainship.console.data import (
    DeploymentRow,
    DeploymentView,
    HomeView,
    MlflowView,
    ModelRow,
    StatusView,
    asl_definition,
    failure_lines,
    run_id_from_events,
    runs_from_steps,
    split_logs,
    step_of,
)
from trainship.console.graph import StateRun
from trainship.console.history import StateDetail

MLFLOW = "http://127.0.0.1:5000"


class Tree(HTMLParser):
    """Each element's tag, attributes and text, in document order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[dict[str, Any]] = []
        self.open: list[dict[str, Any]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(element)
        if tag not in ("meta", "input", "br", "rect", "path"):
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            if self.open.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element["text"] += data

    def by_id(self, ident: str) -> dict[str, Any]:
        found = [e for e in self.elements if e["attrs"].get("id") == ident]
        assert len(found) == 1, f"{len(found)} elements with id {ident}"
        return found[0]

    def by_class(self, cls: str) -> list[dict[str, Any]]:
        return [e for e in self.elements if cls in (e["attrs"].get("class") or "").split()]

    def index(self, element: dict[str, Any]) -> int:
        return next(i for i, e in enumerate(self.elements) if e is element)


def record(status: str, **extra: Any) -> dict[str, Any]:
    return {"deployment_id": "d-1", "status": status,
            "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:TrainAndDeploy:d-1",
            "started_at": "2026-01-01T10:00:00+00:00",
            "stopped_at": None if status == "RUNNING" else "2026-01-01T10:01:05+00:00",
            "steps": [], "builds": [], **extra}


RESULT = {"inference_url": "http://127.0.0.1:9001", "model_name": "iris",
          "model_version": "3", "run_id": "abc123", "status": "SUCCEEDED"}
ERROR = {"error": "TrainingFailed", "message": "The training script exited with code 1",
         "details": "ValueError: <bad> & worse", "help": "Fix the script: see the log lines.",
         "step": "TrainModel"}


def view(rec: dict[str, Any], **extra: Any) -> DeploymentView:
    definition = asl_definition()
    runs = {name: StateRun("succeeded", 1, 1.5, 0) for name in definition["States"]}
    return DeploymentView(record=rec, definition=definition, runs=runs, mlflow_url=MLFLOW,
                          **extra)


def test_home_lists_deployments_models_and_the_mlflow_ui() -> None:
    html = pages.home_page(HomeView(
        [DeploymentRow("d-1", "SUCCEEDED", "2026-01-01T10:00:00+00:00",
                       "2026-01-01T10:01:05+00:00", "iris", "3", None),
         DeploymentRow("d-<2>", "RUNNING", "2026-01-01T11:00:00+00:00", None, None, None,
                       "TrainModel")],
        [ModelRow("iris", "3", "http://127.0.0.1:9001", "process", "d-1")], MLFLOW))
    tree = Tree(html)
    rows = [e for e in tree.elements if "data-deployment-id" in e["attrs"]]
    assert [r["attrs"]["data-deployment-id"] for r in rows] == ["d-1", "d-<2>"]
    assert "1m 05s" in rows[0]["text"] and "iris" in rows[0]["text"]
    assert "TrainModel" in rows[1]["text"]
    assert [s["text"] for s in tree.by_class("status")] == ["SUCCEEDED", "RUNNING"]
    assert "d-&lt;2&gt;" in html and "d-<2>" not in html.replace('"d-&lt;2&gt;"', "")
    model = next(e for e in tree.elements if e["attrs"].get("data-model") == "iris")
    assert model["tag"] == "tr"
    assert tree.by_class("inference-url")[0]["attrs"]["href"] == "http://127.0.0.1:9001"
    assert tree.by_id("mlflow-ui")["attrs"]["href"] == MLFLOW
    assert tree.by_id("deployments")["tag"] == "table" and tree.by_id("models")["tag"] == "table"


def test_succeeded_page_has_graph_try_it_mlflow_logs_and_cost() -> None:
    cost = {"total_usd": 0.000123, "final": True, "state_transitions": 14,
            "state_transitions_usd": 0.00035, "lambda_functions": [], "builds": [],
            "build_minutes": [], "unpriced": [], "region": "us-east-1",
            "prices_as_of": "2026-01-01", "currency": "USD", "excludes": ["S3"]}
    example = json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1.0]]}})
    html = pages.deployment_page(view(
        record("SUCCEEDED", result=RESULT, cost=cost), model_name="iris",
        logs={"TrainModel": "epoch 1\nacc 0.9", "BuildImage": "built <image>"},
        mlflow=MlflowView("abc123", f"{MLFLOW}/#/experiments/1/runs/abc123", "iris", "3",
                          f"{MLFLOW}/#/models/iris/versions/3", {"accuracy": 0.97}, {}),
        input_example=example))
    tree = Tree(html)
    assert tree.by_id("status")["text"] == "SUCCEEDED"
    assert [e["text"] for e in tree.elements if e["tag"] == "h1"] == ["d-1"]
    assert "error" not in {e["attrs"].get("id") for e in tree.elements}
    assert tree.by_id("graph")["tag"] == "svg"
    states = tree.by_class("state")
    assert states and all(s["attrs"]["data-status"] == "succeeded" for s in states)
    assert tree.by_id("state-detail")["tag"] == "section"
    assert tree.by_id("inference-url")["attrs"]["href"] == "http://127.0.0.1:9001"
    form = tree.by_id("try-it")
    assert form["tag"] == "form" and form["attrs"]["action"] == "/deployments/d-1/try"
    textarea = next(e for e in tree.elements if e["tag"] == "textarea")
    assert textarea["attrs"]["name"] == "body" and json.loads(textarea["text"]) == json.loads(
        example)
    assert any(e["tag"] == "button" and e["attrs"].get("type") == "submit"
               for e in tree.elements)
    assert tree.by_id("try-it-result")["tag"] == "pre"
    assert tree.by_class("mlflow-run")[0]["attrs"]["href"].endswith("/runs/abc123")
    metrics = tree.by_class("metrics")[0]
    assert "accuracy" in metrics["text"] and "0.97" in metrics["text"]
    assert tree.by_id("logs-TrainModel")["text"] == "epoch 1\nacc 0.9"
    assert "built &lt;image&gt;" in html
    assert "$0.000123" in tree.by_id("cost")["text"]


def test_failed_page_shows_the_error_first_with_its_help_and_the_failure_logs() -> None:
    html = pages.deployment_page(view(
        record("FAILED", error=ERROR), failure_logs="Traceback\nValueError: <bad>",
        logs={"TrainModel": "Traceback\nValueError: <bad>"}))
    tree = Tree(html)
    error = tree.by_id("error")
    graph = tree.by_id("graph")
    # the error section right after the header, before the graph and everything else
    assert tree.index(error) < tree.index(graph)
    sections = [e for e in tree.elements if e["tag"] == "section"]
    assert sections[0] is error
    assert tree.by_class("error-name")[0]["text"] == "TrainingFailed"
    assert tree.by_class("error-message")[0]["text"] == ERROR["message"]
    assert tree.by_class("error-help")[0]["text"] == ERROR["help"]
    assert tree.by_class("error-details")[0]["text"] == ERROR["details"]
    assert "&lt;bad&gt; &amp; worse" in html
    assert tree.by_id("failure-logs")["text"] == "Traceback\nValueError: <bad>"
    assert "try-it" not in {e["attrs"].get("id") for e in tree.elements}
    assert tree.by_id("status")["text"] == "FAILED"


def test_running_page_polls_its_status() -> None:
    rec = record("RUNNING", current_step="TrainModel")
    definition = asl_definition()
    html = pages.deployment_page(DeploymentView(
        record=rec, definition=definition, mlflow_url=MLFLOW,
        runs={"ValidateRequest": StateRun("succeeded", 1, 0.2, 0),
              "TrainModel": StateRun("running", 1, None, 0)}))
    tree = Tree(html)
    assert tree.by_id("status")["text"] == "RUNNING"
    assert "/status.json" in html and "2000" in html
    assert next(e for e in tree.elements if e["tag"] == "body")["attrs"][
        "data-deployment"] == "d-1"
    by_state = {s["attrs"]["data-state"]: s["attrs"]["data-status"]
                for s in tree.by_class("state")}
    assert by_state["TrainModel"] == "running"
    assert by_state["DeployModel"] == "not_reached"
    status = json.loads(pages.status_json(StatusView("RUNNING", definition, {})))
    assert status["status"] == "RUNNING" and status["graph"].startswith("<svg")


def test_state_fragment_shows_input_output_and_error() -> None:
    fragment = pages.state_fragment("TrainModel", [
        StateDetail(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
                    input='{"a": "<1>"}', output=None, error="States.TaskFailed",
                    cause='{"x": 1}')])
    tree = Tree(fragment)
    assert json.loads(tree.by_class("state-input")[0]["text"]) == {"a": "<1>"}
    assert "States.TaskFailed" in tree.by_class("state-error")[0]["text"]
    assert not tree.by_class("state-output")
    assert "Not reached" in pages.state_fragment("DeployModel", [])
    # the history is gone (the stack restarted): not "not reached"
    gone = pages.state_fragment("DeployModel", None)
    assert "no longer available" in gone and "Not reached" not in gone


def test_split_logs_and_the_lines_around_the_failure() -> None:
    text = ("===== TrainModel build b:1 (FAILED) =====\n"
            + "\n".join(f"line {i}" for i in range(100))
            + "\nTraceback (most recent call last):\n  File x\nValueError: bad\nafter\n"
            "===== error =====\n{}\n")
    logs = split_logs(text)
    assert list(logs) == ["TrainModel"] and logs["TrainModel"].startswith("line 0")
    around = failure_lines(logs, "TrainModel", context=3).splitlines()
    assert around == ["line 97", "line 98", "line 99", "Traceback (most recent call last):",
                      "  File x", "ValueError: bad", "after"]
    assert failure_lines({}, "ValidateRequest") == ""
    # a Lambda step failed: no build log of its own, none of another step's
    assert failure_lines(logs, "SmokeTestModel") == ""


def test_runs_from_steps_when_the_history_is_gone() -> None:
    runs = runs_from_steps(record("FAILED", steps=[
        {"name": "ValidateRequest", "status": "SUCCEEDED", "entered": None, "seconds": 0.5},
        {"name": "TrainModel", "status": "FAILED", "entered": None, "seconds": 3.0}]))
    assert runs["ValidateRequest"].status == "succeeded"
    assert runs["TrainModel"].status == "failed" and runs["TrainModel"].seconds == 3.0


def test_the_run_of_a_failed_training_comes_from_its_build() -> None:
    build = {"Build": {"Id": "b:1", "ExportedEnvironmentVariables": [
        {"Name": "MLFLOW_RUN_ID", "Value": "run-7"}]}}
    events = [{"type": "TaskFailed", "taskFailedEventDetails": {
        "resourceType": "codebuild", "error": "States.TaskFailed",
        "cause": json.dumps(build)}}]
    assert run_id_from_events(events) == "run-7"
    assert run_id_from_events([]) is None
    html = pages.deployment_page(view(
        record("FAILED", error=ERROR),
        mlflow=MlflowView("run-7", f"{MLFLOW}/#/experiments/2/runs/run-7", "iris", None,
                          None, {"loss": 0.5}, {})))
    tree = Tree(html)
    assert tree.by_class("mlflow-run")[0]["attrs"]["href"].endswith("/runs/run-7")
    assert "No model version registered" in tree.by_id("mlflow")["text"]
    assert "vNone" not in html


def test_the_step_on_the_home_page() -> None:
    assert step_of(record("RUNNING", current_step="TrainModel")) == "TrainModel"
    assert step_of(record("FAILED", current_step="DeploymentFailed", error=ERROR)) == (
        "TrainModel")
    assert step_of(record("SUCCEEDED", current_step="DeploymentSucceeded")) is None


def test_only_http_urls_become_links() -> None:
    html = pages.deployment_page(view(record("SUCCEEDED", result=RESULT | {
        "inference_url": "javascript:alert(1)"})))
    assert 'href="javascript:' not in html
    assert Tree(html).by_id("inference-url")["tag"] == "span"
