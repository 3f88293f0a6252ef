"""The state that flows through the state machine, one typed model per step's output.

Each Lambda receives the whole state and returns it with its own part filled in (the
ASL uses ``OutputPath: $.Payload``); CodeBuild steps add ``training`` and ``image``
through ResultSelector/ResultPath.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, with_config

# pydantic validates typing.TypedDict only from Python 3.12 (trainship supports 3.11)
from typing_extensions import TypedDict

from trainship.canary import NoTraffic, Policy, Sample
from trainship.request import NormalizedRequest


class ExportedVariable(BaseModel):
    Name: str
    Value: str = ""


class BuildResult(BaseModel):
    """What ResultSelector keeps of CodeBuild's build result."""

    build_id: str
    exported_variables: list[ExportedVariable] = Field(default_factory=list)

    def variable(self, name: str) -> str | None:
        for item in self.exported_variables:
            if item.Name == name:
                return item.Value
        return None


class ModelInfo(BaseModel):
    """What RegisterModel registered. (States written by 0.1.0 also carry
    ``deployment_id`` and ``replicas`` here, copies of the state's own: ignored.)"""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str
    run_id: str
    model_uri: str
    source: str
    flavors: list[str] = Field(default_factory=list)
    requirements: list[str] = Field(default_factory=list)


@with_config(ConfigDict(extra="allow"))
class Handle(TypedDict):
    """A cluster driver's handle on the version it applied: a JSON object that travels in
    the state (``rollout.handle``) from DeployModel to CheckRollout, SmokeTestModel,
    ShiftTraffic (a canary), PromoteModel and RecordFailure. These keys every driver sets;
    the others are the driver's own (trainship.cluster.handles), kept as they are."""

    model_name: str
    serving_name: str
    version: str
    image_uri: str


class RolloutState(BaseModel):
    ready: bool = False
    poll_seconds: int = 10
    deadline: float = 0.0
    inference_url: str = ""
    test_url: str = ""
    image_uri: str = ""
    handle: Handle
    message: str = ""
    checks: int = 0
    # the version that served the model when this one was applied ("": none), which a
    # canary shares the traffic with (trainship.cluster.Applied.live_version)
    live_version: str = ""


class SampleState(BaseModel):
    """A :class:`trainship.canary.Sample` as JSON: the histogram's bounds are Prometheus'
    ``le`` strings ("0.005", "+Inf"), since JSON has no infinity."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: list[tuple[str, float]] = Field(default_factory=list)

    @classmethod
    def of(cls, sample: Sample) -> SampleState:
        return cls(requests=sample.requests, errors=sample.errors,
                   buckets=[("+Inf" if le == float("inf") else repr(le), count)
                            for le, count in sample.buckets])

    def sample(self) -> Sample:
        return Sample(requests=self.requests, errors=self.errors,
                      buckets=tuple((float(le), count) for le, count in self.buckets))


class CanaryState(BaseModel):
    """``$.canary``: a canary rollout's progress (issue 15, trainship.canary_steps). Set by
    DeployModel only when a canary applies (strategy canary, a live version to share the
    traffic with, not a rollback); ShiftTraffic gives the new version ``steps[step]``
    percent and takes the baseline, WaitForCanary waits ``interval_seconds``, JudgeCanary
    judges the step, appends its verdict to ``history`` and sets ``action`` (CanaryVerdict:
    "next" goes back to ShiftTraffic with ``step`` one on, "promote" to PromoteModel; a
    rollback is CanaryFailed)."""

    # the policy (trainship.canary.Policy), resolved: the request's or the stack's default
    steps: list[int]
    interval_seconds: int
    max_error_rate: float
    max_p99_ms: float | None = None
    min_requests: int
    no_traffic: NoTraffic
    new_version: str
    live_version: str
    step: int = 0  # 0-based index into ``steps`` of the step under way
    share: int = 0  # the share ShiftTraffic asked for (``steps[step]``), percent
    effective_share: int = 0  # what the driver says the new version got, percent
    # version -> instance (pod, port, process) -> its counters when the step began
    baseline: dict[str, dict[str, SampleState]] = Field(default_factory=dict)
    # each judged step: trainship.canary.Verdict.to_dict() with the shares and instances
    history: list[dict[str, Any]] = Field(default_factory=list)
    action: Literal["", "next", "promote", "rollback"] = ""

    @classmethod
    def start(cls, policy: Policy, *, new_version: str, live_version: str) -> CanaryState:
        return cls(steps=list(policy.steps), interval_seconds=policy.interval_seconds,
                   max_error_rate=policy.max_error_rate, max_p99_ms=policy.max_p99_ms,
                   min_requests=policy.min_requests, no_traffic=policy.no_traffic,
                   new_version=new_version, live_version=live_version)

    def policy(self) -> Policy:
        return Policy(steps=tuple(self.steps), interval_seconds=self.interval_seconds,
                      max_error_rate=self.max_error_rate, max_p99_ms=self.max_p99_ms,
                      min_requests=self.min_requests, no_traffic=self.no_traffic)


class FailedStep(BaseModel):
    """``$.failed_step``, set by the ``<State>Caught`` Pass state a Catch leads to: the state
    that failed and the redrive it failed in (``$$.Execution.RedriveCount``)."""

    model_config = ConfigDict(extra="ignore")

    name: str = ""
    redrive_count: int = 0


class SmokeTest(BaseModel):
    ran: bool
    message: str


class AuthState(BaseModel):
    """The model's auth as DeployModel decided it (trainship.model_auth): the mode, the
    smoke test's short-lived token and, when this deployment issues the model's token, that
    token (delivered once, in the result; later versions keep it)."""

    mode: Literal["token", "none"]
    smoke_token: str = ""
    inference_token: str = ""
    # the auth file before DeployModel wrote it (None: there was none): whether the URL
    # was open before (RecordFailure then opens it again if no token remains) and, for a
    # deployment that opened it, what RecordFailure puts back
    previous: str | None = None
    # token auth turned on for an open URL: the file stays ``none`` (the live version's
    # clients keep working) until PromoteModel writes the token
    activate: bool = False
    # ``none`` asked of a model with token auth: the file keeps its tokens (the URL stays
    # guarded if this deployment fails) until PromoteModel opens it
    deactivate: bool = False


class DeploymentResult(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    status: str = "SUCCEEDED"
    deployment_id: str
    inference_url: str
    invocations_url: str
    model_name: str
    serving_name: str = Field(
        default="", description="the DNS-1123 name it is served under (trainship.names)")
    model_version: str
    model_uri: str
    run_id: str
    image_uri: str
    alias: str
    live: bool = True
    superseded_by: str | None = Field(
        default=None, description="a higher version went live first; this one was retired")
    deployment_time_seconds: float
    auth: Literal["token", "none"] | None = Field(
        default=None, description="who may call /invocations: token (Authorization: Bearer) "
                                  "or none (anyone who reaches the URL)")
    inference_token: str | None = Field(
        default=None, description="the model's new token, in the result of the deployment "
                                  "(or rotation) that issued it only: store it now")
    canary: list[dict[str, Any]] | None = Field(
        default=None, description="a canary rollout's steps, each with its verdict (action, "
                                  "reason, numbers) and the new version's share asked and "
                                  "effective; None: it went all at once")


class RemovalResult(BaseModel):
    """The output of a delete (``{"action": "delete"}``, RemoveModel): what was taken out
    of service. A model that served nothing any more succeeds with ``removed`` empty."""

    model_config = ConfigDict(protected_namespaces=())

    status: str = "SUCCEEDED"
    action: Literal["delete"] = "delete"
    deployment_id: str
    model_name: str
    serving_name: str
    removed: list[str] = Field(description="what was removed: objects, processes, the alias")
    alias_removed: str | None = Field(
        default=None, description="the version the alias pointed at (None: it pointed nowhere)")
    purged: bool = Field(default=False, description="the registered model and its images "
                                                    "were deleted too (purge=true)")
    purged_versions: list[str] = Field(default_factory=list)
    purged_images: list[str] = Field(default_factory=list)
    message: str


class TokenRotation(BaseModel):
    """The output of a token rotation (``{"action": "rotate-token"}``, RotateToken): the
    model's new token, once; the old one stops working (docs/api.md)."""

    model_config = ConfigDict(protected_namespaces=())

    status: str = "SUCCEEDED"
    action: Literal["rotate-token"] = "rotate-token"
    deployment_id: str
    model_name: str
    serving_name: str
    inference_url: str = ""
    auth: Literal["token"] = "token"
    inference_token: str = Field(description="the new token: store it now, it is not shown "
                                             "again")
    message: str


class Rollback(BaseModel):
    """Marks a rollback's state (PrepareRollback): an earlier version served again from its
    image, promoted even though a higher version is live."""

    replaced_version: str = Field(default="", description="the version live when it started")


class DeploymentState(NormalizedRequest):
    """The whole state. Later steps' fields are empty until those steps ran.

    A Catch puts the error at ``$.failure`` (ResultPath in the ASL): only RecordFailure
    reads it (steps.FailureContext); this model ignores it, like any unknown key."""

    model_config = ConfigDict(protected_namespaces=(), extra="ignore")

    # The staged copy of this state that the builds read (``<staging>/<id>/job.json``):
    # CodeBuild refuses an environment value over 4096 characters, so the state itself
    # cannot travel as one (see trainship.local.codebuild).
    job_uri: str = ""
    training: BuildResult | None = None
    model: ModelInfo | None = None
    image: BuildResult | None = None
    rollout: RolloutState | None = None
    smoke_test: SmokeTest | None = None
    result: DeploymentResult | None = None
    rollback: Rollback | None = None
    model_auth: AuthState | None = None
    canary: CanaryState | None = None

    def out(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
