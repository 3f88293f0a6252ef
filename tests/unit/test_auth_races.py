"""Concurrent deployments (and rotations) of one model change its auth file without undoing
each other (review finding 3): every change is a read-modify-write through
ClusterDriver.update_auth (the process driver's file lock, the Kubernetes Secret's
resourceVersion), and each deployment adds and removes only its own entries. Run with the
process driver's real files and the kubernetes driver against the HTTP fake."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from trainship import auth, model_auth
from trainship.cluster.process import ProcessDriver
from trainship.errors import TransientError
from trainship.state import AuthState

NOW = time.time()
DEADLINE = NOW + 600


def prepare(driver: Any, **kw: Any) -> AuthState:
    return model_auth.prepare(driver, "m", requested=kw.pop("requested", "token"),
                              default="none", deadline=DEADLINE, **kw)


def text(driver: Any) -> auth.AuthFile:
    found = model_auth.current(driver, "m")
    assert found is not None
    return found


@pytest.fixture(params=["process", "kubernetes"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "process":
        return ProcessDriver(tmp_path / "serving")
    return request.getfixturevalue("kube")[1]


def test_a_failed_deployment_does_not_undo_a_concurrent_ones_token(driver: Any) -> None:
    """A and B deploy a new model with --auth token at once; B fails. A's token (the one
    its result delivers) is the model's; B's pending and smoke tokens are gone."""
    a, b = prepare(driver), prepare(driver)
    assert a.inference_token and b.inference_token
    both = text(driver)
    for state in (a, b):  # both smoke tests pass meanwhile
        assert auth.allows(both, state.smoke_token, NOW)
    model_auth.restore(driver, "m", b)
    mode, token = model_auth.deliver(driver, "m", a)
    assert (mode, token) == ("token", a.inference_token)
    final = text(driver)
    assert [e.kind for e in final.entries] == ["token"]
    assert auth.allows(final, a.inference_token, NOW)
    for gone in (b.inference_token, b.smoke_token, a.smoke_token):
        assert not auth.allows(final, gone, NOW)


def test_the_reviewed_race_a_delivers_then_b_fails(driver: Any) -> None:
    """The review's sequence: A and B prepare, A is promoted, B fails. Before, B's prepare
    replaced A's pending token (A delivered none) and B's restore wrote back A's pending
    one: the live model accepted only a token nobody had."""
    a, b = prepare(driver), prepare(driver)
    assert model_auth.deliver(driver, "m", a) == ("token", a.inference_token)
    model_auth.restore(driver, "m", b)
    final = text(driver)
    assert [e.kind for e in final.entries] == ["token"]
    assert auth.allows(final, a.inference_token, NOW)
    assert not auth.allows(final, b.inference_token, NOW)


def test_the_first_delivered_token_stands(driver: Any) -> None:
    """A and B both issue a token; A delivers first: B delivers nothing (its result has no
    token) and A's clients keep working."""
    a, b = prepare(driver), prepare(driver)
    assert model_auth.deliver(driver, "m", a) == ("token", a.inference_token)
    assert model_auth.deliver(driver, "m", b) == ("token", None)
    final = text(driver)
    assert [e.kind for e in final.entries] == ["token"]
    assert auth.allows(final, a.inference_token, NOW)
    assert not auth.allows(final, b.inference_token, NOW)


def test_a_failed_deployment_before_a_rotation_keeps_the_rotated_token(driver: Any) -> None:
    """The old `restore` wrote its snapshot back, undoing a rotation made meanwhile."""
    first = prepare(driver)
    model_auth.deliver(driver, "m", first)
    failing = prepare(driver, requested=None)
    rotated = model_auth.rotate(driver, "m")
    model_auth.restore(driver, "m", failing)
    final = text(driver)
    assert rotated and auth.allows(final, rotated, NOW)
    assert not auth.allows(final, first.inference_token, NOW)
    assert not auth.allows(final, failing.smoke_token, NOW)


def test_the_process_driver_loses_no_concurrent_update(tmp_path: Path) -> None:
    """Eight threads each add an entry; each one's change reads, then waits a little before
    it returns: without the lock they read the same text and all but one entry is lost."""
    driver = ProcessDriver(tmp_path / "serving")
    tokens = [f"tsk_{n}" for n in range(8)]

    def add(token: str) -> None:
        def change(current: str | None) -> str:
            base = auth.parse(current) if current is not None else auth.AuthFile()
            time.sleep(0.02)  # widens the read-modify-write window (not a timing check)
            return auth.render(auth.with_pending(base, auth.digest(token)))
        driver.update_auth("m", change)

    threads = [threading.Thread(target=add, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = text(driver)
    assert all(auth.allows(final, t, NOW) for t in tokens)


def test_kubernetes_retries_on_a_conflict_and_keeps_both_writes(kube: Any) -> None:
    """Another writer changes the Secret between this update's GET and its write: the write
    (with the resourceVersion it read) gets 409 Conflict, and the change runs again on the
    new text. The same for a Secret another writer creates first (POST: AlreadyExists)."""
    fake, driver = kube
    calls: list[str | None] = []

    def racing(current: str | None) -> str:
        calls.append(current)
        if len(calls) == 1:  # a concurrent writer, once
            driver.write_auth("m", auth.render(auth.with_pending(
                auth.AuthFile(), auth.digest("tsk_other"))))
        base = auth.parse(current) if current is not None else auth.AuthFile()
        return auth.render(auth.with_pending(base, auth.digest("tsk_mine")))

    driver.update_auth("m", racing)
    assert calls[0] is None and calls[1] is not None  # created meanwhile: read again
    final = text(driver)
    assert auth.allows(final, "tsk_other", NOW) and auth.allows(final, "tsk_mine", NOW)
    creates = [c for c in fake.calls if c.method == "POST" and c.path.endswith("/secrets")]
    assert len(creates) == 1  # the one that met AlreadyExists

    calls.clear()
    mine = [0]

    def racing_again(current: str | None) -> str:
        calls.append(current)
        if len(calls) == 1:
            driver.write_auth("m", auth.render(auth.with_pending(
                auth.parse(current or ""), auth.digest("tsk_third"))))
        mine[0] += 1
        return auth.render(auth.with_pending(auth.parse(current or ""),
                                             auth.digest("tsk_fourth")))

    driver.update_auth("m", racing_again)  # an existing Secret: resourceVersion-checked
    assert len(calls) == 2
    final = text(driver)
    for token in ("tsk_other", "tsk_mine", "tsk_third", "tsk_fourth"):
        assert auth.allows(final, token, NOW)
    checked = [c for c in fake.calls if c.method == "PATCH"
               and c.path.endswith("/secrets/m-auth")
               and c.body["metadata"].get("resourceVersion")]
    assert len(checked) == 3  # the first update's retry, then one refused, one accepted


def test_kubernetes_gives_up_with_transient_error_when_it_keeps_changing(kube: Any) -> None:
    _, driver = kube
    driver.write_auth("m", auth.render(auth.open_file()))
    n = [0]

    def always_racing(current: str | None) -> str:
        n[0] += 1
        driver.write_auth("m", auth.render(auth.with_pending(
            auth.AuthFile(), auth.digest(f"tsk_{n[0]}"))))
        return "none\n" if current != "none\n" else "# changed\nnone\n"

    with pytest.raises(TransientError):
        driver.update_auth("m", always_racing)


@pytest.mark.parametrize("status", [429, 503])
def test_kubernetes_busy_is_transient_and_a_refusal_is_not(status: int) -> None:
    """An API server that throttles (429) or is briefly unavailable (5xx) is retried by the
    state machine (TransientError); a 403 is a refusal the user must fix (RolloutFailed)."""
    from kubernetes.client.rest import ApiException

    from trainship.cluster import kube_auth
    from trainship.errors import RolloutFailed

    class Busy:
        def __init__(self, code: int) -> None:
            self.code = code

        def get(self, path: str, **params: Any) -> Any:
            raise ApiException(status=self.code, reason="busy or refused")

    with pytest.raises(TransientError):
        kube_auth.read_auth(Busy(status), "ns", "m")  # type: ignore[arg-type]
    with pytest.raises(RolloutFailed):
        kube_auth.update_auth(Busy(403), "ns", "m", lambda text: "none\n")  # type: ignore[arg-type]
