"""The deployment request: parsing, limits and normalisation.

Used by the API (to answer 400 before any execution starts) and by ValidateRequest (for
executions started directly with ``aws stepfunctions start-execution``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Annotated, Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trainship.canary import NoTraffic, Policy
from trainship.errors import InvalidRequest, TargetNotEnabled
from trainship.names import (
    MAX_MODEL_NAME_CHARS,
    MODEL_NAME_PATTERN,
    model_name_problem,
    reserved_name_problem,
    serving_name,
)

MAX_SCRIPT_BYTES = 100 * 1024  # keeps the execution input far below Step Functions' 256 KiB
MAX_REQUIREMENTS = 50
MAX_REQUIREMENT_CHARS = 200
MAX_TIMEOUT_SECONDS = 7200
MAX_REPLICAS = 20
MAX_EXPERIMENT_NAME_CHARS = 200
# C0 and C1 control characters and DEL (NUL, newline, tab, ESC, ...): refused in names.
# Written with \x escapes so that the pattern reads the same in Python, in JSON Schema
# (ECMA 262) and in API Gateway's validator.
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Never passed through a shell (pip reads a requirements file), but refused all the same;
# < > ! * ( ) ; and quotes stay allowed: PEP 508 specifiers and markers use them.
_SHELL_CHARS = set("`$|&\\?{}#\n\r\t\x00")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpu: str = Field(default="500m", description="CPU request, Kubernetes quantity")
    memory: str = Field(default="1Gi", description="memory request and limit")

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not _QUANTITY.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m or 1Gi")
        return value


Strategy = Literal["canary", "all-at-once"]
STRATEGIES: tuple[Strategy, ...] = ("canary", "all-at-once")
_DEFAULT_POLICY = Policy()


class RolloutRequest(BaseModel):
    """How a new version of a model that already serves replaces the live one
    (docs/rollouts.md). ``canary``: it takes a growing share of the model's traffic, step by
    step, judged on both versions' live metrics after each step, and is rolled back
    (CanaryFailed) when it breaks a limit; ``all-at-once``: it takes all traffic after its
    smoke test. A model's first deployment and a rollback always go all at once. The limits
    are checked by trainship.canary.Policy (a request that breaks them is InvalidRequest)."""

    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = Field(default="canary", description="canary or all-at-once")
    steps: list[int] = Field(
        default_factory=lambda: list(_DEFAULT_POLICY.steps),
        description="the new version's share of the traffic at each step, in percent, "
                    "increasing, the last 100")
    interval_seconds: int = Field(
        default=_DEFAULT_POLICY.interval_seconds, ge=1,
        description="how long each step runs before it is judged")
    max_error_rate: float = Field(
        default=_DEFAULT_POLICY.max_error_rate, ge=0, le=1,
        description="the highest share of the new version's /invocations answered with 5xx "
                    "in a step (0.01 = 1%)")
    max_p99_ms: float | None = Field(
        default=None, gt=0,
        description="the highest p99 latency of the new version's /invocations in a step, "
                    "in ms (omitted: latency is not judged)")
    min_requests: int = Field(
        default=_DEFAULT_POLICY.min_requests, ge=1,
        description="the requests a step needs on the new version for a verdict")
    no_traffic: NoTraffic = Field(
        default=_DEFAULT_POLICY.no_traffic,
        description="what a step with fewer than min_requests does: promote (go on to the "
                    "next step without a verdict) or rollback")

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    def policy(self) -> Policy:
        """The canary's policy; ValueError (with what to give instead) when it is not one."""
        return Policy(steps=tuple(self.steps), interval_seconds=self.interval_seconds,
                      max_error_rate=self.max_error_rate, max_p99_ms=self.max_p99_ms,
                      min_requests=self.min_requests, no_traffic=self.no_traffic)


ExperimentName = Annotated[str, Field(
    description=f"the MLflow experiment (default: model_name); 1 to "
                f"{MAX_EXPERIMENT_NAME_CHARS} characters, no control characters",
    json_schema_extra={"pattern": NO_CONTROL_PATTERN, "minLength": 1,
                       "maxLength": MAX_EXPERIMENT_NAME_CHARS})]


def _rollout_word_schema(schema: dict[str, Any]) -> None:
    """``rollout`` in the JSON schema: the word is accepted too (the ``_rollout_word``
    validator turns it into the object), so docs/openapi.json and API Gateway's request
    model (infra/api_model.py, built from this schema) must say so, or the gateway would
    refuse ``"rollout": "canary"`` before the API sees it."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        options.insert(0, {"type": "string", "enum": list(STRATEGIES),
                           "description": "short for {\"strategy\": ...}"})


class DeploymentRequest(BaseModel):
    """The POST /deployments body (also the state machine input)."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(
        description=f"the MLflow registered-model name: letters, digits, '_', '-', '.', "
                    f"starting with a letter or digit, no '..', at most "
                    f"{MAX_MODEL_NAME_CHARS} characters (served under its serving name, "
                    "e.g. test_model -> test-model)",
        json_schema_extra={"pattern": MODEL_NAME_PATTERN, "minLength": 1,
                           "maxLength": MAX_MODEL_NAME_CHARS})
    script: str | None = Field(default=None, description="the training script as text")
    script_base64: str | None = Field(default=None, description="the script, base64")
    script_content: str | None = Field(default=None,
                                       description="the script, base64 (original /mlops/deploy)")
    requirements: list[str] = Field(default_factory=list)
    experiment_name: ExperimentName | None = None
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_SECONDS)
    timeout: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_SECONDS,
                                description="original /mlops/deploy name of timeout_seconds")
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    resources: Resources | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=64)
    target: Literal["process", "podman", "kubernetes"] | None = Field(
        default=None, description="where to serve (default: the stack's TRAINSHIP_CLUSTER); "
                                  "must be one of its enabled targets")
    # strict: a string "true" or a 1 is refused, not read as true (a typo must not switch
    # tracebacks on)
    debug: bool = Field(default=False, strict=True,
                        description="the inference service answers model errors with their "
                                    "traceback (stack_trace); default false, for debugging "
                                    "only: a traceback may show model internals")
    auth: Literal["token", "none"] | None = Field(
        default=None,
        description="who may call the model's /invocations: \"token\" (a bearer token, "
                    "returned once as the result's inference_token), \"none\" (anyone who "
                    "reaches the URL); omitted: the model keeps its current auth, a new "
                    "model gets the stack's default (token on AWS, none locally)")
    rollout: RolloutRequest | None = Field(
        default=None,
        description="how a new version of a model that already serves takes over: "
                    "\"canary\" or \"all-at-once\", or an object with strategy and the "
                    "canary's steps and limits (docs/rollouts.md); omitted: the stack's "
                    "default (canary with its default steps)",
        json_schema_extra=_rollout_word_schema)

    @field_validator("rollout", mode="before")
    @classmethod
    def _rollout_word(cls, value: Any) -> Any:
        """``"rollout": "canary"`` is short for ``{"strategy": "canary"}``."""
        return {"strategy": value} if isinstance(value, str) else value

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        problem = model_name_problem(value)
        reserved = reserved_name_problem(value) if problem is None else None
        if reserved is not None:
            raise ValueError(
                f"{value!r} cannot be deployed: {reserved}. Choose a name whose serving "
                "name starts otherwise (e.g. demo_live instead of live_demo); a model "
                "already deployed under such a name can still be rolled back, listed and "
                "deleted")
        if problem is not None:
            raise ValueError(
                f"{value!r} is not a model name: {problem}. A model name is the MLflow "
                "registered-model name: letters, digits, '_', '-' and '.', e.g. test_model, "
                f"customer-churn, iris.v2 (at most {MAX_MODEL_NAME_CHARS} characters)")
        return value

    @field_validator("experiment_name")
    @classmethod
    def _experiment_name(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.strip() or len(value) > MAX_EXPERIMENT_NAME_CHARS:
            raise ValueError(f"must be 1 to {MAX_EXPERIMENT_NAME_CHARS} characters")
        control = _CONTROL.search(value)
        if control is not None:
            raise ValueError(f"{value!r} contains the control character "
                             f"U+{ord(control.group()):04X}; names may not contain control "
                             "characters (NUL, newline, tab, ...)")
        return value

    @field_validator("requirements")
    @classmethod
    def _requirements(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_REQUIREMENTS:
            raise ValueError(f"at most {MAX_REQUIREMENTS} requirements")
        return [check_requirement(item) for item in value]


def check_requirement(text: str) -> str:
    """A PEP 508 requirement without pip options, URLs or shell metacharacters."""
    stripped = text.strip()
    if not stripped or len(stripped) > MAX_REQUIREMENT_CHARS:
        raise ValueError(f"{text!r}: empty or longer than {MAX_REQUIREMENT_CHARS} characters")
    if stripped.startswith("-"):
        raise ValueError(f"{text!r}: pip options are not allowed, only PEP 508 requirements")
    if "://" in stripped or any(ch in _SHELL_CHARS for ch in stripped):
        raise ValueError(f"{text!r}: URLs and shell metacharacters are not allowed")
    try:
        requirement = Requirement(stripped)
    except InvalidRequirement as exc:
        raise ValueError(f"{text!r} is not a PEP 508 requirement: {exc}") from exc
    if requirement.url:
        raise ValueError(f"{text!r}: direct URL requirements are not allowed")
    return stripped


class NormalizedRequest(BaseModel):
    """The request after validation: what the state machine carries (no script text)."""

    deployment_id: str
    model_name: str
    serving_name: str = ""
    experiment_name: str
    script_uri: str
    script_sha256: str
    requirements: list[str]
    timeout_seconds: int
    replicas: int
    resources: Resources
    started_at: str = ""
    target: str = ""
    debug: bool = False
    auth: Literal["token", "none"] | None = None
    # the request's ``rollout`` (the state's own ``rollout`` is the cluster rollout's
    # progress, trainship.state.RolloutState); None: the stack's default
    release: RolloutRequest | None = None


DEFAULT_TIMEOUT_SECONDS = 1800


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{where}: {message}")
    return "\n".join(lines)


def decode_script(request: DeploymentRequest) -> str:
    given = [name for name in ("script", "script_base64", "script_content")
             if getattr(request, name) is not None]
    if len(given) != 1:
        raise InvalidRequest(
            "Give the training script in exactly one of script, script_base64, script_content",
            details=f"fields given: {given or 'none'}")
    field = given[0]
    raw = getattr(request, field)
    if field == "script":
        text = str(raw)
    else:
        try:
            data = base64.b64decode(str(raw), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(f"{field} is not valid base64", details=str(exc)) from exc
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"{field} does not decode to UTF-8 text",
                                 details=str(exc)) from exc
    size = len(text.encode())
    if size > MAX_SCRIPT_BYTES:
        raise InvalidRequest(f"The script is {size} bytes; the limit is {MAX_SCRIPT_BYTES}",
                             details="Move data loading into the script (read from S3 or a "
                                     "URL) instead of embedding data.")
    if not text.strip():
        raise InvalidRequest("The script is empty", details=f"field: {field}")
    if "\x00" in text:
        raise InvalidRequest("The script contains NUL bytes", details=f"field: {field}")
    return text


def parse_request(body: Any, targets: tuple[str, ...] = ()) -> tuple[DeploymentRequest, str]:
    """Validate a request body; return the model and the decoded script, or InvalidRequest
    (TargetNotEnabled for a ``target`` outside ``targets``, when those are given)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object",
                             details=f"got {type(body).__name__}")
    try:
        request = DeploymentRequest.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest("The request has invalid fields",
                             details=_format_validation_error(exc)) from exc
    if request.timeout is not None and request.timeout_seconds is not None:
        raise InvalidRequest("Give timeout_seconds or timeout, not both",
                             details="timeout is the original /mlops/deploy name")
    check_rollout(request.rollout)
    if targets and request.target is not None and request.target not in targets:
        raise TargetNotEnabled(f"Target {request.target!r} is not enabled here",
                               details=f"enabled targets: {', '.join(targets)}")
    return request, decode_script(request)


def check_rollout(rollout: RolloutRequest | None) -> None:
    """InvalidRequest when a canary ``rollout`` is not a canary policy (trainship.canary.Policy
    says why)."""
    if rollout is not None and rollout.strategy == "canary":
        try:
            rollout.policy()
        except ValueError as exc:
            raise InvalidRequest("The request's rollout is not a canary policy",
                                 details=f"rollout: {exc}") from exc


def parse_rollout(value: Any) -> RolloutRequest:
    """A request's ``rollout`` alone (a strategy word or an object), checked as
    :func:`parse_request` checks it, with the same InvalidRequest (the CLI checks its
    --rollout/--canary-* flags with it before sending anything)."""
    try:
        rollout = DeploymentRequest.model_validate(
            {"model_name": "m", "rollout": value}).rollout
    except ValidationError as exc:
        raise InvalidRequest("The request has invalid fields",
                             details=_format_validation_error(exc)) from exc
    if rollout is None:
        raise InvalidRequest("The request has invalid fields",
                             details="rollout: give \"canary\", \"all-at-once\" or an object")
    check_rollout(rollout)
    return rollout


def effective_timeout(request: DeploymentRequest) -> int:
    return request.timeout_seconds or request.timeout or DEFAULT_TIMEOUT_SECONDS


def normalize(request: DeploymentRequest, script: str, *, deployment_id: str,
              script_uri: str, started_at: str = "") -> NormalizedRequest:
    return NormalizedRequest(
        deployment_id=deployment_id,
        model_name=request.model_name,
        serving_name=serving_name(request.model_name),
        experiment_name=request.experiment_name or request.model_name,
        script_uri=script_uri,
        script_sha256=hashlib.sha256(script.encode()).hexdigest(),
        requirements=request.requirements,
        timeout_seconds=effective_timeout(request),
        replicas=request.replicas,
        resources=request.resources or Resources(),
        started_at=started_at,
        target=request.target or "",
        debug=request.debug,
        auth=request.auth,
        release=request.rollout,
    )


def deployment_id_for(idempotency_key: str | None, fresh: str) -> str:
    """The execution name: derived from the idempotency key when there is one."""
    if idempotency_key:
        return "d-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]
    return fresh


VERSION_PATTERN = r"^[1-9][0-9]{0,9}$"


class RollbackRequest(BaseModel):
    """The POST /models/{model_name}/rollback body."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(description="the registered version to serve again, e.g. \"1\" (a "
                                     "number is accepted too)",
                         json_schema_extra={"pattern": VERSION_PATTERN})

    @field_validator("version", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not re.fullmatch(VERSION_PATTERN, value):
            raise ValueError("a version is a positive number such as \"1\"")
        return value
