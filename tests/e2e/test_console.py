"""The local console (issue 16's "done when") in headless Chromium (tests/e2e/browser.py):

- the iris example deployed as the README tells a user (`trainship deploy`), and a script
  that trains a model and then raises (ScriptFailed in TrainModel), deployed the same way;
- the home page lists both with their status, and the model with its URL;
- the successful deployment's graph: every state on its path succeeded, every other state
  not reached; clicking DeployModel shows its input and output; the try-it form, pre-filled
  with the model's input example, returns the model's prediction;
- the failed deployment's graph: TrainModel failed, its failure path caught, the rest not
  reached; the error document's help text first on the page, with the log lines around
  the failure;
- `trainship open ID` prints the page's URL.

The screenshots in docs/images/ (shown in the README) are written here, from these pages."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import screenshot
from tests.e2e.day_two import TRAINSHIP, cli
from tests.helpers import EXAMPLES, REPO, post_json
from trainship.client import Client
from trainship.terminal import EXIT_FAILED, EXIT_OK

pytestmark = pytest.mark.e2e
IMAGES = REPO / "docs" / "images"
ASL = REPO / "infra" / "statemachine" / "deploy.asl.json"
MODEL = "console-iris"
BROKEN = "console-broken"
# trains a real model, then fails the way a user's script does
CRASH = (EXAMPLES / "iris_sklearn.py").read_text() + (
    "\nraise RuntimeError('the validation set is empty: check the data split')\n")
CRASH_MESSAGE = "RuntimeError: the validation set is empty"
# a first deployment of a model, all at once (the e2e stacks' default rollout)
SUCCESS_PATH = {"Route", "ValidateRequest", "TrainModel", "RegisterModel", "BuildImage",
                "DeployModel", "WaitForRollout", "CheckRollout", "IsRolloutDone",
                "SmokeTestModel", "ChooseRollout", "PromoteModel", "DeploymentSucceeded"}
FAILED_STATE = "TrainModel"
BEFORE_FAILURE = {"Route", "ValidateRequest"}
FAILURE_PATH = {"TrainModelCaught", "RecordFailure", "DeploymentFailed"}


@pytest.fixture(scope="module")
def console(local_stack: dict[str, Any]) -> str:
    return str(local_stack["console"]).rstrip("/")


@pytest.fixture(scope="module")
def deployed(local_stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, Any]:
    """Both deployments, with the CLI as a user runs it, one after the other: what it
    printed."""
    api_url = local_stack["api"]
    outputs = []
    for name, model, script in (("train.py", MODEL, (EXAMPLES / "iris_sklearn.py").read_text()),
                                ("broken.py", BROKEN, CRASH)):
        work = tmp_path_factory.mktemp(model)
        (work / name).write_text(script)
        outputs.append(cli(api_url, "deploy", name, "--model-name", model, cwd=work))
    (good_code, good_out), (bad_code, bad_out) = outputs
    assert good_code == EXIT_OK, good_out
    assert bad_code == EXIT_FAILED, bad_out
    assert (bad_out["error"], bad_out["step"]) == ("ScriptFailed", FAILED_STATE), bad_out
    return {"succeeded": good_out, "failed": bad_out}


def statuses(page: Page) -> dict[str, str]:
    """Each state of the graph on the page: its data-status."""
    pairs: list[list[str]] = page.locator("svg#graph g.state").evaluate_all(
        "gs => gs.map(g => [g.dataset.state, g.dataset.status])")
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), names  # each state drawn once
    return dict((name, status) for name, status in pairs)


def words(text: str | None) -> str:
    """Text as a reader sees it: whitespace runs as one space, code marks dropped."""
    return " ".join((text or "").replace("`", "").split())


def states_of_the_asl() -> set[str]:
    return set(json.loads(ASL.read_text())["States"])


def test_home_lists_both_deployments_and_the_model(
        page: Page, console: str, deployed: dict[str, Any]) -> None:
    page.goto(f"{console}/")
    for outcome, status in (("succeeded", "SUCCEEDED"), ("failed", "FAILED")):
        row = page.locator(
            f'#deployments tr[data-deployment-id="{deployed[outcome]["deployment_id"]}"]')
        expect(row).to_have_count(1)
        expect(row.locator("td.status")).to_contain_text(status)
    model = page.locator(f'#models tr[data-model="{MODEL}"]')
    expect(model).to_have_count(1)
    expect(model.locator("a.inference-url")).to_have_attribute(
        "href", deployed["succeeded"]["inference_url"])
    expect(page.locator(f'#models tr[data-model="{BROKEN}"]')).to_have_count(0)
    assert (page.locator("#mlflow-ui").get_attribute("href") or "").startswith("http")


def test_a_successful_deployment_is_green_along_its_path(
        page: Page, console: str, deployed: dict[str, Any]) -> None:
    deployment_id = deployed["succeeded"]["deployment_id"]
    page.goto(f"{console}/deployments/{deployment_id}")
    expect(page.locator("h1")).to_contain_text(deployment_id)
    expect(page.locator("#status")).to_have_text("SUCCEEDED")
    drawn = statuses(page)
    assert set(drawn) == states_of_the_asl()
    assert SUCCESS_PATH <= set(drawn)
    assert drawn == {name: "succeeded" if name in SUCCESS_PATH else "not_reached"
                     for name in drawn}
    expect(page.locator("#error")).to_have_count(0)

    page.locator('svg#graph g.state[data-state="DeployModel"]').click()
    detail = page.locator("#state-detail")
    expect(detail.locator("pre.state-input").first).to_contain_text(deployment_id)
    expect(detail.locator("pre.state-output").first).to_contain_text(deployment_id)
    expect(detail.locator("pre.state-error")).to_have_count(0)
    state_input = json.loads(detail.locator("pre.state-input").first.text_content() or "")
    assert state_input["deployment_id"] == deployment_id
    assert state_input["model_name"] == MODEL


def test_the_try_it_form_returns_the_models_prediction(
        page: Page, console: str, deployed: dict[str, Any]) -> None:
    result = deployed["succeeded"]
    page.goto(f"{console}/deployments/{result['deployment_id']}")
    expect(page.locator("#inference-url")).to_have_attribute("href", result["inference_url"])
    body = page.locator('#try-it textarea[name="body"]').input_value()
    example = json.loads(body)  # the model's input example: the example's three test rows
    page.locator('#try-it button[type="submit"]').click()
    answer = page.locator("#try-it-result")
    expect(answer).to_contain_text("predictions")
    predictions = json.loads(answer.text_content() or "")["predictions"]
    assert len(predictions) == 3
    status, direct = post_json(f"{result['inference_url']}/invocations", example)
    assert status == 200 and direct["predictions"] == predictions, direct

    page.locator('svg#graph g.state[data-state="TrainModel"]').click()  # for the picture
    expect(page.locator("#state-detail pre.state-output").first).to_be_visible()
    screenshot(page, IMAGES / "console-succeeded.png")


def test_a_failed_deployment_shows_the_failed_state_and_the_help_first(
        page: Page, console: str, deployed: dict[str, Any], api: Client) -> None:
    deployment_id = deployed["failed"]["deployment_id"]
    document = api.get(deployment_id)["error"]
    assert document["error"] == "ScriptFailed" and document["help"], document
    page.goto(f"{console}/deployments/{deployment_id}")
    expect(page.locator("#status")).to_have_text("FAILED")
    drawn = statuses(page)
    assert set(drawn) == states_of_the_asl()
    expected = {name: "succeeded" if name in BEFORE_FAILURE else
                "failed" if name == FAILED_STATE else
                "caught" if name in FAILURE_PATH else "not_reached" for name in drawn}
    assert drawn == expected

    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error.locator(".error-name")).to_contain_text("ScriptFailed")
    assert words(error.locator(".error-help").text_content()) == words(document["help"])
    expect(error.locator(".error-message")).to_contain_text(CRASH_MESSAGE)
    # first in the page: before the graph and everything else of the deployment
    assert page.evaluate("""() => {
        const error = document.querySelector('#error'), graph = document.querySelector('#graph');
        return !!(error.compareDocumentPosition(graph) & Node.DOCUMENT_POSITION_FOLLOWING);
    }""")
    expect(page.locator("#failure-logs")).to_contain_text(CRASH_MESSAGE)
    # shown whole: the failure's lines are not hidden in a scrolled box
    assert page.locator("#failure-logs").evaluate("e => e.scrollHeight <= e.clientHeight")
    expect(page.locator("#logs-TrainModel")).to_contain_text(CRASH_MESSAGE)

    page.locator(f'svg#graph g.state[data-state="{FAILED_STATE}"]').click()
    # the state's own error, as Step Functions records it (the AWS console shows the same):
    # a failed CodeBuild build is States.TaskFailed, with the build as its cause
    state_error = page.locator("#state-detail pre.state-error").first
    expect(state_error).to_contain_text("States.TaskFailed")
    expect(state_error).to_contain_text('"BuildStatus": "FAILED"')
    screenshot(page, IMAGES / "console-failed.png")


def test_trainship_open_prints_the_page(console: str, deployed: dict[str, Any],
                                        local_home: Path) -> None:
    deployment_id = deployed["succeeded"]["deployment_id"]
    # BROWSER=true: webbrowser "opens" the page with true(1), which does nothing
    env = {**{k: v for k, v in os.environ.items() if k != "TRAINSHIP_API"},
           "TRAINSHIP_HOME": str(local_home), "BROWSER": "true"}
    proc = subprocess.run([str(TRAINSHIP), "open", deployment_id], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == EXIT_OK and "Traceback" not in proc.stderr, proc.stderr
    assert f"{console}/deployments/{deployment_id}" in proc.stdout.split(), proc.stdout
