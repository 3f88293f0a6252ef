"""The local stack for end-to-end tests: started once in a temporary home, stopped after."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e import browser as chromium
from tests.helpers import PLANTED_SECRET, QUICK_SCRIPT, deploy
from trainship.client import Client
from trainship.local import stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SIGNING_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
               "MLFLOW_TRACKING_AWS_SIGV4")


@pytest.fixture(scope="session", autouse=True)
def stack_credentials() -> Iterator[dict[str, str]]:
    """Every local stack the tests start uses this key, and every MLflow client of the
    tests signs with it (SigV4, as SageMaker managed MLflow requires): the gate in front
    of the local MLflow refuses unsigned API calls."""
    saved = {k: os.environ.get(k) for k in SIGNING_ENV}
    values = {"AWS_ACCESS_KEY_ID": stack.STACK_ACCESS_KEY,
              "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
              "AWS_DEFAULT_REGION": stack.REGION, "MLFLOW_TRACKING_AWS_SIGV4": "true"}
    os.environ.update(values)
    try:
        yield values
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session", autouse=True)
def all_at_once_by_default() -> Iterator[None]:
    """Every local stack the tests start (it inherits this environment) ships a new version
    of a model all at once unless its request asks for a canary: the stacks' own default,
    a canary with minutes-long steps, would slow every test that deploys a second version.
    tests/e2e/test_canary.py asks for its canary explicitly."""
    saved = os.environ.get("TRAINSHIP_DEFAULT_ROLLOUT")
    os.environ["TRAINSHIP_DEFAULT_ROLLOUT"] = "all-at-once"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TRAINSHIP_DEFAULT_ROLLOUT", None)
        else:
            os.environ["TRAINSHIP_DEFAULT_ROLLOUT"] = saved


@pytest.fixture(scope="session")
def local_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trainship-home")


@pytest.fixture(scope="session")
def local_stack(local_home: Path) -> Iterator[dict[str, Any]]:
    os.environ["TRAINSHIP_TEST_API_SECRET"] = PLANTED_SECRET
    info = stack.up(local_home)
    try:
        yield info
    finally:
        stack.down(local_home)


@pytest.fixture(scope="session")
def api(local_stack: dict[str, Any]) -> Client:
    return Client(local_stack["api"])


@pytest.fixture(scope="session")
def serving(api: Client) -> dict[str, Any]:
    """A model that serves throughout the reliability tests (test_reliability*.py); every
    bad case must leave it up. test_cost_receipt.py reads its deployment's cost receipt,
    test_serving_debug.py compares its errors with those of a model deployed with debug."""
    record = deploy(api, {"model_name": "steady", "script": QUICK_SCRIPT})
    assert record["status"] == "SUCCEEDED", record.get("error")
    return record["result"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium, one per test module (tests/e2e/browser.py). A machine without it
    fails the test (never skips): `make test` installs it."""
    why = chromium.missing()
    if why:
        pytest.fail(why)
    with chromium.chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page (its own context: no cookies or storage shared between tests) at
    1400x1000, whose waits and expectations give up after 30 s."""
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    context = browser.new_context(viewport=chromium.VIEWPORT)
    context.set_default_timeout(30_000)
    try:
        yield context.new_page()
    finally:
        context.close()
