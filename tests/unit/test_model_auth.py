"""A model's auth through the pipeline's steps (trainship.model_auth via trainship.steps), with
the fake cluster driver that keeps auth files: DeployModel decides and writes the file
before the apply, SmokeTestModel sends its own token, PromoteModel delivers the model's token
once, later versions keep it, RecordFailure (and a failed apply) put the file back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FakeDriver, handle, state
from trainship import auth, model_auth, registry, steps
from trainship.cluster import Answer
from trainship.config import Settings
from trainship.errors import RolloutFailed
from trainship.image_pins import NoImagePins
from trainship.state import DeploymentState

NOW = 1_900_000_000.0


def settings(default_auth: str = "none") -> Settings:
    return Settings(staging_uri="", tracking_uri="", cluster="process", model_alias="live",
                    rollout_timeout_seconds=600, rollout_poll_seconds=1,
                    state_machine_arn="", archive_dir="", home=Path("."),
                    default_auth=default_auth)


@pytest.fixture(autouse=True)
def no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's part of the steps (the input example, the alias) stands still."""
    monkeypatch.setattr(registry, "serving_input_example", lambda *a: {"inputs": [[1.0]]})
    monkeypatch.setattr(registry, "promote", lambda **kw: False)


def deployed(tmp_path: Path, driver: FakeDriver, *, default: str = "none",
             **request: Any) -> DeploymentState:
    """DeployModel, SmokeTestModel and PromoteModel of one version, as the state machine
    chains them."""
    s = state(tmp_path, **request, model={
        "name": "m", "version": "1", "run_id": "r", "model_uri": "models:/m-1", "source": "s"},
        image={"build_id": "b", "exported_variables": [{"Name": "IMAGE_URI",
                                                        "Value": "img:m-v1"}]})
    s = steps.deploy_model(s, settings=settings(default), driver=driver)  # type: ignore[arg-type]
    s = DeploymentState.model_validate(s.out())  # through the state machine: JSON
    s = steps.smoke_test(s, settings=settings(default), driver=driver)  # type: ignore[arg-type]
    return steps.promote_model(DeploymentState.model_validate(s.out()), settings=settings(),
                               driver=driver, pins=NoImagePins())  # type: ignore[arg-type]


def current(driver: FakeDriver) -> auth.AuthFile:
    return auth.parse(driver.auth["m"])


def test_token_is_delivered_once_and_kept_by_later_versions(tmp_path: Path) -> None:
    driver = FakeDriver([])
    first = deployed(tmp_path, driver, auth="token")
    assert first.result is not None and first.result.auth == "token"
    token = first.result.inference_token
    assert token is not None and token.startswith("tsk_")
    # the smoke test sent its own token, which PromoteModel removed
    # ... and once without a token, which a current inference service refuses (401)
    [(_, _, headers), (_, _, probe)] = driver.invoked
    smoke = headers[model_auth.SMOKE_HEADER]
    assert probe == {}
    assert smoke != token and "Authorization" not in headers
    written = current(driver)
    assert auth.delivered(written) and auth.allows(written, token, NOW)
    assert not auth.allows(written, smoke, NOW) and not auth.allows(written, None, NOW)
    assert [e.kind for e in written.entries] == ["token"]

    second = deployed(tmp_path, driver)  # auth omitted: the model keeps its token
    assert second.result is not None and second.result.auth == "token"
    assert second.result.inference_token is None
    assert second.model_auth is not None and second.model_auth.inference_token == ""
    assert auth.allows(current(driver), token, NOW)
    assert "inference_token" not in second.result.model_dump(exclude_none=True)


@pytest.mark.parametrize("default,request_auth,mode", [
    ("none", None, "none"), ("token", None, "token"), ("token", "none", "none"),
    ("none", "token", "token")])
def test_a_new_model_gets_what_it_asks_for_else_the_stacks_default(
        tmp_path: Path, default: str, request_auth: str | None, mode: str) -> None:
    driver = FakeDriver([])
    extra = {"auth": request_auth} if request_auth else {}
    done = deployed(tmp_path, driver, default=default, **extra)
    assert done.result is not None and done.result.auth == mode
    assert current(driver).open is (mode == "none")
    assert (done.result.inference_token is not None) is (mode == "token")
    assert (model_auth.SMOKE_HEADER in driver.invoked[0][2]) is (mode == "token")


def test_a_model_keeps_its_auth_whatever_the_default_and_none_opens_it(
        tmp_path: Path) -> None:
    driver = FakeDriver([])
    deployed(tmp_path, driver, default="token", auth="none")
    kept = deployed(tmp_path, driver, default="token")  # an open model stays open
    assert kept.result is not None and kept.result.auth == "none" and current(driver).open
    first = deployed(tmp_path, driver, auth="token")
    assert first.result is not None and first.result.inference_token
    opened = deployed(tmp_path, driver, auth="none")
    assert opened.result is not None and opened.result.auth == "none"
    assert current(driver) == auth.open_file()


def test_a_pending_token_is_replaced_by_the_next_deployment(tmp_path: Path) -> None:
    never_told = "tsk_never_told"
    driver = FakeDriver([])
    driver.auth["m"] = auth.render(auth.with_token(auth.AuthFile(), auth.digest(never_told),
                                                   pending=True))
    done = deployed(tmp_path, driver)
    assert done.result is not None and done.result.auth == "token"
    token = done.result.inference_token
    assert token and token != never_told
    assert not auth.allows(current(driver), never_told, NOW)


def test_turning_token_on_keeps_the_url_open_until_promote_and_a_failure_changes_nothing(
        tmp_path: Path) -> None:
    """none -> token: the live version reads the same file, so it stays ``none`` until
    PromoteModel (finding 8); the smoke test then sends no token and makes no 401 probe."""
    driver = FakeDriver([])
    driver.auth["m"] = auth.render(auth.open_file())
    s = state(tmp_path, auth="token", model={
        "name": "m", "version": "2", "run_id": "r", "model_uri": "models:/m-2", "source": "s"},
        image={"build_id": "b", "exported_variables": [{"Name": "IMAGE_URI",
                                                        "Value": "img:m-v2"}]})
    s = steps.deploy_model(s, settings=settings(), driver=driver)  # type: ignore[arg-type]
    assert current(driver).open  # current clients keep working
    failed = steps.FailureContext.model_validate({
        **s.out(), "failure": {"Error": "RolloutFailed", "Cause": "not ready"}})
    steps.record_failure(failed, cluster=lambda: driver)  # type: ignore[arg-type, return-value]
    assert s.rollout is not None and driver.discarded == [s.rollout.handle]
    assert current(driver).open  # as it was

    class FailingApply(FakeDriver):
        def apply(self, spec: Any) -> Any:
            raise RuntimeError("the cluster refused")

    refusing = FailingApply([])
    refusing.auth["m"] = driver.auth["m"]
    again = s.model_copy(update={"rollout": None, "model_auth": None})
    with pytest.raises(RuntimeError):
        steps.deploy_model(again, settings=settings(), driver=refusing)  # type: ignore[arg-type]
    assert auth.parse(refusing.auth["m"]).open

    done = deployed(tmp_path, driver, auth="token")
    assert [h for (_, _, h) in driver.invoked] == [{}]  # open until PromoteModel
    assert done.result is not None and done.result.auth == "token"
    token = done.result.inference_token
    assert token and [e.kind for e in current(driver).entries] == ["token"]
    assert auth.allows(current(driver), token, NOW)


def test_a_failed_token_deployment_of_a_new_model_leaves_no_token_and_no_open_url(
        tmp_path: Path) -> None:
    """No auth file before, --auth token, the rollout fails: the pending and smoke tokens
    go and the file is closed without tokens, which the next deployment decides on as for a
    new model (the stack's default: token on AWS), never as an open URL; a rollback (the
    versions served before trainship had auth) keeps it open."""
    driver = FakeDriver([])
    s = state(tmp_path, auth="token", model={
        "name": "m", "version": "1", "run_id": "r", "model_uri": "models:/m-1", "source": "s"},
        image={"build_id": "b", "exported_variables": [{"Name": "IMAGE_URI",
                                                        "Value": "img:m-v1"}]})
    s = steps.deploy_model(s, settings=settings(), driver=driver)  # type: ignore[arg-type]
    assert s.model_auth is not None and not current(driver).open  # a new model: at once
    failed = steps.FailureContext.model_validate({
        **s.out(), "failure": {"Error": "RolloutFailed", "Cause": "not ready"}})
    steps.record_failure(failed, cluster=lambda: driver)  # type: ignore[arg-type, return-value]
    assert current(driver) == auth.AuthFile(open=False, entries=())
    again = deployed(tmp_path, driver, default="token")
    assert again.result is not None and again.result.auth == "token"
    assert again.result.inference_token
    assert model_auth.decide(None, auth.AuthFile(open=False, entries=()), "none") == "none"
    assert model_auth.decide(None, auth.AuthFile(open=False, entries=()), "token",
                             rollback=True) == "none"


def test_a_failed_none_deployment_of_a_new_model_does_not_leave_it_open() -> None:
    """--auth none on a model without a file, failed: not ``none`` for the next deployment
    (which then gets the stack's default), but a closed file without tokens."""
    driver = FakeDriver([])
    made = model_auth.prepare(driver, "m", requested="none", default="token",  # type: ignore[arg-type]
                              deadline=NOW + 60, now=NOW)
    assert current(driver).open
    model_auth.restore(driver, "m", made)  # type: ignore[arg-type]
    assert current(driver) == auth.AuthFile(open=False, entries=())


def test_promote_running_again_keeps_the_token_it_delivered() -> None:
    """PromoteModel may run again after its write (a retry on Lambda.ServiceException, a
    redrive, a lost answer): the second run finds its own token delivered and keeps it, and
    a failure recorded after delivery does not take a delivered token away either."""
    driver = FakeDriver([])
    made = model_auth.prepare(driver, "m", requested="token", default="none",  # type: ignore[arg-type]
                              deadline=NOW + 60, now=NOW)
    token = made.inference_token
    first = model_auth.deliver(driver, "m", made)  # type: ignore[arg-type]
    second = model_auth.deliver(driver, "m", made)  # type: ignore[arg-type]
    assert first == second == ("token", token)
    assert auth.allows(current(driver), token, NOW)
    model_auth.restore(driver, "m", made)  # type: ignore[arg-type]
    assert [e.kind for e in current(driver).entries] == ["token"]
    assert auth.allows(current(driver), token, NOW)


def test_the_smoke_test_fails_a_version_that_answers_without_a_token(tmp_path: Path) -> None:
    """Finding 4: an image from before token auth ignores the auth file and answers
    anyone; its smoke test (with a valid smoke token) passed and the result said
    ``auth: token``. The stand-in answers 200 to both requests: RolloutFailed."""
    driver = FakeDriver([])
    first = deployed(tmp_path, driver, auth="token")
    assert first.result is not None and first.result.inference_token
    driver.invoked.clear()
    driver.answers = [Answer(200, '{"predictions": [0]}'), Answer(200, '{"predictions": [0]}')]
    with pytest.raises(RolloutFailed) as caught:
        deployed(tmp_path, driver, rollback={"replaced_version": "2"})
    assert "not 401" in caught.value.message and caught.value.step == "SmokeTestModel"
    assert "before token auth" in (caught.value.help or "")
    assert [model_auth.SMOKE_HEADER in h for (_, _, h) in driver.invoked] == [True, False]


def test_a_model_without_an_input_example_is_still_checked_for_its_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No input example, so no smoke request: the request without a token (an empty body:
    the guard answers before reading it) still runs, and a version that answers it with
    anything but 401 does not go live."""
    driver = FakeDriver([])
    first = deployed(tmp_path, driver, auth="token")
    assert first.result is not None and first.result.inference_token
    monkeypatch.setattr(registry, "serving_input_example", lambda *a: None)
    driver.invoked.clear()
    driver.answers = [Answer(400, '{"error_code": "BAD_REQUEST"}')]
    with pytest.raises(RolloutFailed) as caught:
        deployed(tmp_path, driver)
    assert "not 401" in caught.value.message
    assert [(path, payload, h) for (path, payload, h) in driver.invoked] == [
        ("/invocations", {}, {})]


def test_turning_token_off_keeps_the_url_guarded_until_promote_and_a_failure_too(
        tmp_path: Path) -> None:
    """``--auth none`` on a model with a token: the file keeps its token (plus a smoke
    entry the smoke test sends) until PromoteModel opens the URL; a failed deployment takes
    only its smoke entry out, the token still answers and the URL stays guarded."""
    driver = FakeDriver([])
    first = deployed(tmp_path, driver, auth="token")
    assert first.result is not None and first.result.inference_token
    token = first.result.inference_token
    s = state(tmp_path, auth="none", model={
        "name": "m", "version": "2", "run_id": "r", "model_uri": "models:/m-2", "source": "s"},
        image={"build_id": "b", "exported_variables": [{"Name": "IMAGE_URI",
                                                        "Value": "img:m-v2"}]})
    s = steps.deploy_model(s, settings=settings(), driver=driver)  # type: ignore[arg-type]
    assert s.model_auth is not None and s.model_auth.deactivate
    assert not current(driver).open and auth.allows(current(driver), token, NOW)
    failed = steps.FailureContext.model_validate({
        **s.out(), "failure": {"Error": "RolloutFailed", "Cause": "not ready"}})
    steps.record_failure(failed, cluster=lambda: driver)  # type: ignore[arg-type, return-value]
    assert [e.kind for e in current(driver).entries] == ["token"]
    opened = deployed(tmp_path, driver, auth="none")
    assert opened.result is not None and opened.result.auth == "none"
    assert current(driver).open
    assert all(model_auth.SMOKE_HEADER in h for (_, _, h) in driver.invoked[-1:])


def test_rotation_replaces_the_token_and_keeps_smoke_entries() -> None:
    driver = FakeDriver([])
    assert model_auth.rotate(driver, "m") is None  # no auth file: nothing to rotate
    driver.auth["m"] = auth.render(auth.open_file())
    assert model_auth.rotate(driver, "m") is None
    base = auth.with_token(auth.AuthFile(), auth.digest("tsk_a"), pending=False)
    driver.auth["m"] = auth.render(auth.with_smoke(base, auth.digest("tsk_s"), NOW + 60, NOW))
    new = model_auth.rotate(driver, "m")
    assert new and new != "tsk_a"
    written = current(driver)
    assert auth.allows(written, new, NOW) and auth.allows(written, "tsk_s", NOW)
    assert not auth.allows(written, "tsk_a", NOW)


def test_promote_without_auth_state_reports_none_for_old_states(tmp_path: Path) -> None:
    """A state from before auth (no model_auth): PromoteModel leaves auth out."""
    s = state(tmp_path, model={"name": "m", "version": "1", "run_id": "r",
                               "model_uri": "models:/m-1", "source": "s"},
              rollout={"handle": handle(), "inference_url": "http://h"})
    done = steps.promote_model(s, settings=settings(), driver=FakeDriver([]),  # type: ignore
                               pins=NoImagePins())
    assert done.result is not None and done.result.auth is None
    assert done.result.inference_token is None


def test_a_rollback_keeps_the_models_auth_and_a_model_without_a_file_stays_open(
        tmp_path: Path) -> None:
    """A rollback's state (PrepareRollback) has no ``auth``; on AWS (default token) a model
    deployed before trainship had auth has no auth file: it serves open, and so does its
    rollback (the Deployment mounts the auth Secret, so the file is written all the same)."""
    driver = FakeDriver([])
    rolled = deployed(tmp_path, driver, default="token", rollback={"replaced_version": "2"})
    assert rolled.result is not None and rolled.result.auth == "none"
    assert current(driver) == auth.open_file()
    first = deployed(tmp_path, driver, auth="token")
    token = first.result.inference_token if first.result else None
    rolled = deployed(tmp_path, driver, default="none", rollback={"replaced_version": "2"})
    assert rolled.result is not None and rolled.result.auth == "token"
    assert rolled.result.inference_token is None
    assert auth.allows(current(driver), token, NOW)
    assert rolled.model_auth is not None and rolled.model_auth.smoke_token  # its smoke test
