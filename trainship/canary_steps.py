"""The canary loop's Lambda steps (issue 15): ShiftTraffic and JudgeCanary, plain functions
typed in and out, like trainship.steps. The state machine runs the loop (ShiftTraffic ->
WaitForCanary -> JudgeCanary -> CanaryVerdict, infra/statemachine/deploy.asl.json); the
judging is trainship.canary's; the drivers share the traffic and scrape /metrics.

- :func:`shift_traffic`: the new version gets ``steps[step]`` percent of the model's
  traffic (under the model's lock, as ``ClusterDriver.set_traffic`` requires), the share
  the driver reports as effective is recorded, then both versions' /metrics are scraped as
  the step's baseline. The scrape comes after the shift, so the step's window holds only
  traffic at the new share.
- :func:`judge_canary`: both versions scraped again; each version's increase since the
  baseline, per instance (trainship.canary.delta: a restarted process counts from zero),
  judged (trainship.canary.judge). ``next`` moves ``step`` on, ``promote`` ends the loop,
  ``rollback`` raises CanaryFailed, whose document's details hold the numbers and the
  history (RecordFailure then discards the new version: the live one keeps the URL and all
  of the traffic). A new version that no instance of answers /metrics at judge time is
  rolled back: it is not serving (the front would hide its refusals as the live version's
  answers).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from trainship import canary
from trainship.canary import Sample, Verdict
from trainship.cluster import ClusterDriver
from trainship.errors import CanaryFailed
from trainship.state import CanaryState, DeploymentState, SampleState

LOG = logging.getLogger(__name__)
SHIFT_STEP = "ShiftTraffic"
JUDGE_STEP = "JudgeCanary"
# The error document travels in an execution's failure cause, at most 32768 characters
# (Step Functions API reference, TaskFailedEventDetails and ExecutionFailedEventDetails:
# "cause ... Maximum length of 32768"), nested in Lambda's error payload, which escapes
# its quotes again: the details stay well below, the earliest steps left out first.
MAX_DETAILS_CHARS = 6000


def _parsed(texts: Mapping[str, str], version: str) -> dict[str, Sample]:
    """One version's instances -> their parsed /metrics. An instance whose text is not a
    trainship service's metrics (an image from before them) is left out, like one that
    did not answer."""
    found: dict[str, Sample] = {}
    for instance, text in texts.items():
        try:
            found[instance] = canary.parse(text)
        except ValueError as exc:
            LOG.warning("v%s's /metrics from %s is unreadable, left out: %s", version,
                        instance, exc)
    return found


def _scrape(driver: ClusterDriver, model_name: str,
            versions: tuple[str, ...]) -> dict[str, dict[str, Sample]]:
    scraped = driver.scrape(model_name)
    return {version: _parsed(scraped.get(version, {}), version) for version in versions}


def _canary(state: DeploymentState) -> CanaryState:
    if state.canary is None or state.rollout is None:
        raise ValueError("no canary under way: $.canary and $.rollout are set by DeployModel")
    return state.canary


def shift_traffic(state: DeploymentState, *, driver: ClusterDriver) -> DeploymentState:
    """ShiftTraffic: the step's share to the new version, and the step's baseline."""
    progress = _canary(state)
    assert state.rollout is not None
    share = progress.steps[progress.step]
    with driver.lock(state.model_name):
        effective = driver.set_traffic(state.rollout.handle, share)
    baseline = _scrape(driver, state.model_name,
                       (progress.new_version, progress.live_version))
    progress.share = share
    progress.effective_share = effective
    progress.baseline = {version: {instance: SampleState.of(sample)
                                   for instance, sample in instances.items()}
                         for version, instances in baseline.items()}
    progress.action = ""
    return state


def _not_serving(progress: CanaryState, old: Sample) -> Verdict:
    """The verdict on a step at whose end no instance of the new version answered /metrics."""
    numbers: dict[str, Any] = {
        "step": progress.step + 1, "steps": len(progress.steps), "share": progress.share,
        "min_requests": progress.min_requests, "max_error_rate": progress.max_error_rate,
        "max_p99_ms": progress.max_p99_ms, "new": None,
        "old": canary.judge(progress.policy(), progress.step, Sample(), old).numbers["old"]}
    return Verdict(action="rollback", numbers=numbers, reason=(
        f"No instance of the new version v{progress.new_version} answered /metrics at the "
        f"end of step {progress.step + 1} ({progress.share}% of the traffic): it is not "
        "serving, and what its share of the requests got cannot be told."))


def failure_details(verdict: Verdict, progress: CanaryState) -> str:
    """CanaryFailed's details: JSON of the deciding verdict (its numbers), the versions and
    every step judged; when that is too long for an execution's failure cause, the earliest
    steps are left out (``history_omitted`` says how many)."""
    history = list(progress.history)
    omitted = 0
    while True:
        text = json.dumps({"verdict": verdict.to_dict(), "new_version": progress.new_version,
                           "live_version": progress.live_version, "history": history,
                           "history_omitted": omitted}, sort_keys=True)
        if len(text) <= MAX_DETAILS_CHARS or not history:
            return text
        history.pop(0)
        omitted += 1


def judge_canary(state: DeploymentState, *, driver: ClusterDriver) -> DeploymentState:
    """JudgeCanary: the step's verdict, appended to the history; CanaryFailed on rollback."""
    progress = _canary(state)
    new_version, live_version = progress.new_version, progress.live_version
    now = _scrape(driver, state.model_name, (new_version, live_version))

    def since_baseline(version: str) -> Sample:
        before = {instance: sample.sample()
                  for instance, sample in progress.baseline.get(version, {}).items()}
        return canary.delta(now[version], before)

    old = since_baseline(live_version)
    if not now[new_version]:
        verdict = _not_serving(progress, old)
    else:
        verdict = canary.judge(progress.policy(), progress.step,
                               since_baseline(new_version), old)
    progress.history.append({
        **verdict.to_dict(), "share": progress.share,
        "effective_share": progress.effective_share,
        "instances": {"new": len(now[new_version]), "old": len(now[live_version])}})
    progress.action = verdict.action
    if verdict.action == "rollback":
        raise CanaryFailed(
            f"{state.model_name} v{new_version} was rolled back at canary step "
            f"{progress.step + 1} of {len(progress.steps)}: {verdict.reason} "
            f"v{live_version} keeps the URL and all of the traffic.",
            details=failure_details(verdict, progress), step=JUDGE_STEP)
    if verdict.action == "next":
        progress.step += 1
    return state
