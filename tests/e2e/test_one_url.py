"""One URL per model in process mode (the local default): a second version of a model is
served at the first one's URL, and requests kept going across the switch are all answered,
over new connections and over one keep-alive connection alike (the front drains the old
version; trainship.cluster.proxy)."""

from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.helpers import QUICK_SCRIPT, ROW, deploy
from trainship.client import Client
from trainship.cluster.process import ProcessDriver
from trainship.procs import pid_alive

pytestmark = pytest.mark.e2e
MODEL = "one_url"


def live_version(url: str) -> str:
    """The version the URL answers as (the service's trainship_model_info metric)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(r'trainship_model_info\{[^}]*model_version="(\d+)"', text)
    assert found, text[:500]
    return found.group(1)


def new_connections(url: str, answers: list[Any], stop: threading.Event) -> None:
    while not stop.is_set():
        request = urllib.request.Request(f"{url}/invocations", data=json.dumps(ROW).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answers.append(response.status)
        except urllib.error.HTTPError as exc:
            answers.append(exc.code)
        except OSError as exc:  # refused, reset: what the front must never cause
            answers.append(repr(exc))


def one_keep_alive_connection(url: str, answers: list[Any], stop: threading.Event) -> None:
    address = urlparse(url)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        while not stop.is_set():
            try:
                conn.request("POST", "/invocations", body=json.dumps(ROW),
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                answers.append(response.status)
            except (OSError, http.client.HTTPException) as exc:
                answers.append(repr(exc))
                conn.close()  # the next request opens a new connection
    finally:
        conn.close()


def test_a_new_version_is_served_at_the_same_url_and_no_request_is_dropped(
        api: Client, local_home: Path) -> None:
    first = deploy(api, {"model_name": MODEL, "script": QUICK_SCRIPT})
    assert first["status"] == "SUCCEEDED", first.get("error")
    url = first["result"]["inference_url"]
    assert live_version(url) == first["result"]["model_version"]
    [v1] = ProcessDriver(local_home / "serving").records(MODEL)

    answers: dict[str, list[Any]] = {"new": [], "kept": []}
    stop = threading.Event()
    pollers = [threading.Thread(target=new_connections, args=(url, answers["new"], stop)),
               threading.Thread(target=one_keep_alive_connection,
                                args=(url, answers["kept"], stop))]
    for poller in pollers:
        poller.start()
    try:
        second = deploy(api, {"model_name": MODEL, "script": QUICK_SCRIPT})
        # a little more traffic after the switch, so both pollers cross it
        stop.wait(1.0)
    finally:
        stop.set()
        for poller in pollers:
            poller.join(30)
    assert second["status"] == "SUCCEEDED", second.get("error")
    result = second["result"]
    assert result["inference_url"] == url  # the same URL
    assert int(result["model_version"]) == int(first["result"]["model_version"]) + 1
    assert live_version(url) == result["model_version"]  # answering as the new version
    # every request across the switch got its answer: none refused or reset
    for kind, got in answers.items():
        assert len(got) > 20, (kind, len(got))
        assert all(status == 200 for status in got), (kind, [s for s in got if s != 200][:3])
    # the old version's server was stopped (after the front drained it); the new one serves
    assert not pid_alive(v1["pid"])
    [v2] = ProcessDriver(local_home / "serving").records(MODEL)
    assert v2["version"] == result["model_version"] and v2["url"] == url
    assert v2["test_url"] != url and pid_alive(v2["pid"])
