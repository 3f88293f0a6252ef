"""A model's day two end to end on the local stack, in process and container (podman) mode,
one model per mode whose answers differ per version:

- v1 is deployed with `trainship deploy` and `trainship models` lists it (its URL answers);
  v2 is submitted to the API and goes live at the same URL; `trainship models NAME` shows
  v1's serving period closed and v2's open; an unknown name is ModelNotFound.
- While v2 deploys, `delete` of the model is refused (DeploymentInProgress) and changes
  nothing; in process mode, requests kept going across the switch over new connections and
  over one keep-alive connection are all answered (the front drains the old version,
  trainship.cluster.proxy) and v1's server is stopped after it.
- `trainship rollback NAME --to 1` serves v1 again at that URL from its image, without
  training or building (the execution's history has neither), the MLflow alias moves down
  to 1; the bad cases are refused with their own error names and change nothing.
- `trainship delete NAME` takes it out of service (its URL refuses connections, `models` no
  longer lists it, every serving period is closed, the registry keeps its versions); a
  second delete succeeds with nothing to remove; deleting an unknown model is ModelNotFound.

Container mode needs podman and its tools (`make test` installs them): without them this
fails, it does not skip."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.day_two import (
    ROW,
    SCRIPT,
    answer,
    cli,
    listed,
    live,
    live_version,
    refused,
    registry,
    run,
    traffic,
)
from tests.helpers import post_json, wait_done
from trainship import containers, served
from trainship.client import ApiError, Client
from trainship.cluster.process import ProcessDriver
from trainship.names import serving_name
from trainship.procs import pid_alive
from trainship.terminal import EXIT_OK, EXIT_REFUSED

pytestmark = pytest.mark.e2e
TARGETS = ["process", "podman"]
PROCESS_ONLY = pytest.mark.parametrize("story", ["process"], indirect=True)


@pytest.fixture(scope="module", params=TARGETS)
def story(request: pytest.FixtureRequest, api: Client, local_stack: dict[str, Any],
          local_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """v1 deployed with the CLI and what `trainship models` said then; v2 submitted to the
    API and, while it ran, a delete of the model (refused) and (process mode) requests kept
    going; what each step returned, for the tests to check."""
    target = request.param
    if target == "podman":
        assert containers.missing_tools() == []  # fail, never skip
    model = f"roll_back_{target}"  # an underscore: the serving name differs (roll-back-...)
    api_url = local_stack["api"]
    work = tmp_path_factory.mktemp(model)
    (work / "train.py").write_text(SCRIPT.format(label=1))
    code, v1 = cli(api_url, "deploy", "train.py", "--model-name", model, "--target", target,
                   cwd=work)
    assert code == 0, v1
    url = v1["inference_url"]
    seen: dict[str, Any] = {
        "model": model, "target": target, "url": url, "v1": v1,
        "v1_listed": listed(api_url, model), "v1_answer": post_json(f"{url}/invocations", ROW),
        "v1_table": run("models", "--api", api_url).stdout,
        "v1_servers": ProcessDriver(local_home / "serving").records(model)}
    keep_going: contextlib.AbstractContextManager[dict[str, list[Any]]] = \
        traffic(url) if target == "process" else contextlib.nullcontext({})
    with keep_going as answers:
        running = api.submit({"model_name": model, "target": target,
                              "script": SCRIPT.format(label=2)})
        try:
            api.delete_model(model)
            seen["refusal"] = None
        except ApiError as exc:
            seen["refusal"] = exc
        seen["during"] = {
            "answer": answer(url), "alias": live(local_stack, model),
            "other_running": [d for d in api.list() if d["status"] == "RUNNING"
                              and d["deployment_id"] != running["deployment_id"]]}
        record = wait_done(api, running["deployment_id"])
    assert record["status"] == "SUCCEEDED", json.dumps(record.get("error"), indent=2)
    seen.update(running=running["deployment_id"], v2=record["result"], traffic=answers)
    return seen


def test_v2_is_served_at_v1s_url_and_models_shows_each_versions_history(
        story: dict[str, Any], local_stack: dict[str, Any]) -> None:
    api, model, url, v1, v2 = (local_stack["api"], story["model"], story["url"], story["v1"],
                               story["v2"])
    first = story["v1_listed"]  # `trainship models` after v1
    assert first["live_version"] == "1" and first["inference_url"] == url
    assert first["serving_name"] == model.replace("_", "-")
    assert first["target"] == story["target"] and first["image_uri"] and first["live_since"]
    assert first["deployment_id"] == v1["deployment_id"]
    assert story["v1_answer"] == (200, {"predictions": [1]})  # the URL it lists answers
    assert model in story["v1_table"] and url in story["v1_table"]

    assert v2["inference_url"] == url and v2["model_version"] == "2"
    assert answer(url) == 2 and live_version(url) == "2"  # answering as the new version
    now = listed(api, model)
    assert now["live_version"] == "2" and now["inference_url"] == url  # the same URL
    assert now["deployment_id"] == story["running"] == v2["deployment_id"]

    code, record = cli(api, "models", model)
    assert code == EXIT_OK, record
    assert record["live_version"] == "2"
    newer, older = record["versions"]
    assert (newer["version"], newer["live"], older["version"], older["live"]) == \
        ("2", True, "1", False)
    [closed] = older["served"]
    assert closed["to"] is not None and closed["to"] >= closed["from"]
    [still] = newer["served"]
    assert still["to"] is None and still["from"] == record["live_since"]
    assert older["image_uri"] == v1["image_uri"]
    assert newer["image_uri"] == now["image_uri"] != v1["image_uri"]
    text = run("models", model, "--api", api)
    assert text.returncode == 0 and "live version:   2 since" in text.stdout

    unknown = run("models", f"{model}_nope", "--api", api)
    assert unknown.returncode == EXIT_REFUSED
    assert "ModelNotFound (HTTP 404)" in unknown.stderr and f"{model}_nope" in unknown.stderr


def test_v2_went_all_at_once_the_e2e_stacks_default(story: dict[str, Any],
                                                    api: Client) -> None:
    """Its request names no rollout: TRAINSHIP_DEFAULT_ROLLOUT (tests/e2e/conftest.py) reached
    the stack's handlers, so no canary step ran."""
    names = [step["name"] for step in api.get(story["running"])["steps"]]
    assert "PromoteModel" in names and "ShiftTraffic" not in names, names


def test_a_delete_while_v2_deploys_is_refused_and_changes_nothing(
        story: dict[str, Any]) -> None:
    refusal = story["refusal"]
    assert refusal is not None, "the delete was accepted while v2 was deploying"
    assert refusal.status == 409
    assert refusal.document["error"] == "DeploymentInProgress"
    assert story["running"] in refusal.document.get("details", "")
    # nothing changed: v1 still answered at its URL, the alias still on it, no execution
    during = story["during"]
    assert during["answer"] == 1 and during["alias"] == "1"
    assert during["other_running"] == []


@PROCESS_ONLY
def test_no_request_is_dropped_across_the_switch_to_v2(
        story: dict[str, Any], local_home: Path) -> None:
    # every request across the switch got its answer: none refused or reset
    for kind, got in story["traffic"].items():
        assert len(got) > 20, (kind, len(got))
        assert all(status == 200 for status in got), (kind, [s for s in got if s != 200][:3])
    # the old version's server was stopped (after the front drained it); the new one serves
    [v1] = story["v1_servers"]
    assert v1["version"] == "1" and not pid_alive(v1["pid"])
    [v2] = ProcessDriver(local_home / "serving").records(story["model"])
    assert v2["version"] == "2" and v2["url"] == story["url"]
    assert v2["test_url"] != story["url"] and pid_alive(v2["pid"])


def test_bad_rollbacks_are_refused_and_change_nothing(
        story: dict[str, Any], local_stack: dict[str, Any]) -> None:
    model, api = story["model"], local_stack["api"]
    for args, error in ((["--to", "9"], "ModelVersionNotFound"),
                        (["--to", "2"], "VersionAlreadyLive"),
                        (["--to", "x"], "InvalidRequest")):
        code, doc = cli(api, "rollback", model, *args)
        assert code != 0 and doc["error"] == error, (args, doc)
        assert doc["help"]
    code, doc = cli(api, "rollback", "no_such_model", "--to", "1")
    assert code != 0 and doc["error"] == "ModelNotFound", doc
    # a registered version that never served: no image to serve again
    client = registry(local_stack)
    first = client.get_model_version(model, "1")
    logged = first.source.split("/")[-1] if first.source.startswith("models:/m-") else None
    never = client.create_model_version(model, first.source, run_id=first.run_id,
                                        model_id=logged)
    assert never.version == "3"
    code, doc = cli(api, "rollback", model, "--to", str(never.version))
    assert code != 0 and doc["error"] == "VersionNeverServed", doc
    # nothing changed: v2 still live and answering, the alias on it
    assert live(local_stack, model) == "2"
    assert answer(story["url"]) == 2


def test_rollback_serves_the_earlier_version_at_the_same_url_without_a_build(
        story: dict[str, Any], local_stack: dict[str, Any], api: Client) -> None:
    model, url = story["model"], story["url"]
    code, result = cli(local_stack["api"], "rollback", model, "--to", "1")
    assert code == 0, result
    assert result["status"] == "SUCCEEDED" and result["model_version"] == "1", result
    assert result["inference_url"] == url and result["live"] is True
    assert result["image_uri"] == story["v1"]["image_uri"]  # v1's own image
    assert answer(url) == 1
    record = wait_done(api, result["deployment_id"])
    steps = [step["name"] for step in record["steps"]]
    assert "PrepareRollback" in steps and "SmokeTestModel" in steps, steps
    assert not {"TrainModel", "BuildImage", "ValidateRequest", "RegisterModel"} & set(steps)
    assert live(local_stack, model) == "1"
    by_version = {v.version: v for v in served.versions(registry(local_stack), model)}
    assert by_version["1"].periods[-1]["to"] is None and len(by_version["1"].periods) == 2
    assert by_version["1"].periods[-1]["deployment_id"] == result["deployment_id"]
    assert by_version["2"].periods[-1]["to"] is not None
    # and forward again: a rollback to the higher version works the same way
    code, doc = cli(local_stack["api"], "rollback", model, "--to", "1")
    assert code != 0 and doc["error"] == "VersionAlreadyLive", doc
    code, result = cli(local_stack["api"], "rollback", model, "--to", "2")
    assert code == 0 and result["model_version"] == "2", result
    assert answer(url) == 2 and live(local_stack, model) == "2"
    mine = listed(local_stack["api"], model)
    assert mine["live_version"] == "2" and mine["inference_url"] == url, mine


def test_delete_takes_it_out_of_service_and_keeps_the_registry(
        story: dict[str, Any], local_stack: dict[str, Any], local_home: Path,
        api: Client) -> None:
    model, url, api_url = story["model"], story["url"], local_stack["api"]
    assert answer(url) == 2
    if story["target"] == "process":  # what a user reads in a terminal
        done = run("delete", model, "--api", api_url)
        assert done.returncode == EXIT_OK, done.stdout + done.stderr
        assert "SUCCEEDED" in done.stdout and "removed:" in done.stdout
        assert "RemoveModel" in done.stderr  # the progress of the execution, as for a deploy
        found = re.search(r"^deployment_id:\s+(\S+)$", done.stdout, re.M)
        assert found, done.stdout
        deployment_id = found.group(1)
    else:  # what a script reads
        code, result = cli(api_url, "delete", model)
        assert code == EXIT_OK and result["status"] == "SUCCEEDED", result
        deployment_id = result["deployment_id"]
    assert refused(url)
    # the execution's record: the delete path only (no training, no build)
    record = api.get(deployment_id)
    assert [s["name"] for s in record["steps"]] == ["Route", "RemoveModel", "ModelRemoved"]
    result = record["result"]
    assert result["action"] == "delete" and result["alias_removed"] == "2", result
    assert result["removed"], result
    if story["target"] == "process":  # the model's front (its proxy) went with the server
        assert any("front" in item for item in result["removed"]), result
    else:  # its pods are gone
        pods = containers.podman(local_home, "pod", "ps", "--format", "{{.Name}}",
                                 check=False).stdout
        assert serving_name(model) not in pods, pods
    # what a user lists: the model no longer serves; its history says when v2 stopped
    code, models = cli(api_url, "models")
    assert code == EXIT_OK and model not in [m["model_name"] for m in models]
    code, detail = cli(api_url, "models", model)
    assert code == EXIT_OK and detail["live_version"] is None, detail
    assert all(p["to"] for v in detail["versions"] for p in v["served"])  # all closed
    client = registry(local_stack)
    versions = sorted(v.version for v in client.search_model_versions(f"name = '{model}'"))
    assert versions == ["1", "2", "3"]  # the registry keeps them (no --purge)
    assert "live" not in client.get_registered_model(model).aliases


def test_a_second_delete_succeeds_with_nothing_to_remove(
        story: dict[str, Any], api: Client, local_stack: dict[str, Any]) -> None:
    accepted = api.delete_model(story["model"])
    record = wait_done(api, accepted["deployment_id"])
    assert record["status"] == "SUCCEEDED", record.get("error")
    assert record["result"]["removed"] == []
    assert "nothing to remove" in record["result"]["message"]
    unknown = run("delete", "unknown_model", "--api", local_stack["api"])
    assert unknown.returncode == EXIT_REFUSED, unknown.stdout + unknown.stderr
    assert "ModelNotFound" in unknown.stderr
