"""The API's records, twice: the contract and the JSON as code holds it.

The pydantic models are the API's answers as docs/openapi.json describes them
(trainship.openapi writes their schemas); the API function passes each answer through its
model on the way out. The TypedDicts are the same records as plain JSON, where code keeps
them as dicts: the deployment store builds them from Step Functions and archives them on
disk, and the client reads them off the wire (``record["status"]``). A finished
execution's ``result`` stays the output as the state machine gave it (``dict``), so an
archived record always reads back. tests/unit/test_records.py fails when a TypedDict and
its model name different keys or disagree on which are required.
"""

# No ``from __future__ import annotations``: TypedDict reads NotRequired off evaluated
# annotations only (Python 3.11), and required keys are part of what this module says.
from typing import Any, Literal, NotRequired, TypedDict, cast

from pydantic import BaseModel, ConfigDict, Field

from trainship.cost import CostReceipt
from trainship.errors import ErrorDocument
from trainship.state import DeploymentResult, RemovalResult, TokenRotation

ExecutionStatus = Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]
StepStatus = Literal["RUNNING", "SUCCEEDED", "FAILED"]


# --- the contract (pydantic; the schemas of docs/openapi.json) -------------------------------

class Accepted(BaseModel):
    """The 202 of POST /deployments and POST /mlops/deploy."""

    deployment_id: str = Field(description="the execution name; the id of every other route")
    status: Literal["RUNNING"]
    execution_arn: str
    status_url: str = Field(description="GET this path for the status record")


class DeploymentBrief(BaseModel):
    deployment_id: str
    status: ExecutionStatus
    started_at: str | None
    stopped_at: str | None


class DeploymentList(BaseModel):
    """GET /deployments: newest first."""

    deployments: list[DeploymentBrief]


class StepRecord(BaseModel):
    """One state of the execution, from its history."""

    name: str = Field(description="the state name (ValidateRequest, TrainModel, ...)")
    status: StepStatus
    entered: str | None
    seconds: float | None = Field(default=None, description="present once the state exited")


class BuildRecord(BaseModel):
    """A CodeBuild build the execution ran (TrainModel, BuildImage)."""

    step: str | None
    build_id: str | None
    status: str | None
    logs: dict[str, Any] = Field(description="CodeBuild's logs object (GroupName, "
                                             "StreamName, DeepLink)")


class CanaryProgress(BaseModel):
    """A canary rollout under way, or cut short by a failure (docs/rollouts.md), read from
    the execution's latest state; a finished deployment's steps are its result's
    ``canary``."""

    step: int = Field(description="the step it is at, from 1")
    steps: int = Field(description="how many steps the rollout has")
    share: int | None = Field(description="the new version's share this step asks for, "
                                          "in percent")
    effective_share: int | None = Field(
        description="the share the new version has now, in percent (on Kubernetes the "
                    "ratio of ready replicas, which the steps only approach)")
    verdicts: list[dict[str, Any]] = Field(
        description="the steps judged so far: action, reason, numbers, effective_share")


class DeploymentRecord(BaseModel):
    """GET /deployments/{deployment_id}: ``result`` once SUCCEEDED, ``error`` once FAILED,
    TIMED_OUT or ABORTED. A delete's (DELETE /models/{model_name}) result is a
    RemovalResult; a token rotation's (POST /models/{model_name}/token) a TokenRotation."""

    deployment_id: str
    status: ExecutionStatus
    execution_arn: str | None = Field(
        default=None, description="absent for a deployment the local stack's restart ended")
    started_at: str | None
    stopped_at: str | None
    current_step: str | None = None
    steps: list[StepRecord]
    builds: list[BuildRecord]
    result: DeploymentResult | RemovalResult | TokenRotation | None = None
    error: ErrorDocument | None = None
    cost: CostReceipt | None = Field(
        default=None, description="what the execution costs at AWS list prices (locally: what "
                                  "the same run would cost on AWS); so far while RUNNING")
    canary: CanaryProgress | None = Field(
        default=None, description="a canary rollout under way (or cut short): absent when "
                                  "the deployment has none, and once it SUCCEEDED (the "
                                  "result's canary has every step then)")


class ServedPeriod(BaseModel):
    """A period a version served (trainship.served): ``to`` is null while it serves."""

    # "from" is a Python keyword: the field is from_, the JSON key "from"
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True,
                              validate_by_alias=True)

    from_: str = Field(alias="from", description="ISO 8601 UTC")
    to: str | None = Field(description="ISO 8601 UTC; null while the version serves")
    deployment_id: str = Field(description="the deployment that made it live")


class ModelRecord(BaseModel):
    """A registered model trainship deployed, and what of it serves (GET /models lists
    these; every field after serving_name is null when no version serves)."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str = Field(description="the MLflow registered-model name")
    serving_name: str = Field(description="the DNS-1123 name it is served under")
    live_version: str | None = Field(description="the version the alias points at; null: "
                                                 "the model serves nothing")
    inference_url: str | None = Field(description="the model's one URL")
    image_uri: str | None
    target: str | None = Field(description="process, podman or kubernetes")
    live_since: str | None = Field(description="when the live version went live (ISO 8601)")
    deployment_id: str | None = Field(description="the deployment that made it live")


class ModelList(BaseModel):
    """GET /models: the models that serve, by name."""

    models: list[ModelRecord]


class VersionRecord(BaseModel):
    """A registered version of a model, whether or not it ever served."""

    version: str
    live: bool = Field(description="the alias points at it")
    created_at: str | None = Field(description="when it was registered (ISO 8601)")
    run_id: str | None
    image_uri: str | None = Field(description="its image, once it served; null before")
    served: list[ServedPeriod] = Field(description="when it served, oldest first")


class ModelDetail(ModelRecord):
    """GET /models/{model_name}: the model and every registered version, newest first."""

    versions: list[VersionRecord]


def answer(model: BaseModel) -> dict[str, Any]:
    """A model as the API answers it: JSON types, and only the keys the record has (a
    running deployment has no ``result`` key, rather than ``"result": null``)."""
    return model.model_dump(mode="json", exclude_unset=True)


# --- the same records as JSON dicts (TypedDicts) --------------------------------------------

class ErrorJson(TypedDict):
    """An error document as JSON (trainship.errors.ErrorDocument)."""

    error: str
    message: str
    details: NotRequired[str]
    help: NotRequired[str]
    step: NotRequired[str | None]


class AcceptedJson(TypedDict):
    deployment_id: str
    status: Literal["RUNNING"]
    execution_arn: str
    status_url: str


class StepJson(TypedDict):
    name: str
    status: StepStatus
    entered: str | None
    seconds: NotRequired[float]


class BuildJson(TypedDict):
    step: str | None
    build_id: str | None
    status: str | None
    logs: dict[str, Any]


class FunctionCostJson(TypedDict):
    function: str
    invocations: int
    memory_mb: int
    architecture: str
    billed_ms: int
    gb_seconds: float
    usd: float


class BuildCostJson(TypedDict):
    step: str | None
    build_id: str | None
    environment_type: str
    compute_type: str
    seconds: float
    billed_minutes: int
    usd: float | None


class ComputeTypeMinutesJson(TypedDict):
    environment_type: str
    compute_type: str
    billed_minutes: int
    usd: float | None


class CostJson(TypedDict):
    """trainship.cost.CostReceipt as JSON."""

    total_usd: float
    final: bool
    state_transitions: int
    state_transitions_usd: float
    lambda_functions: list[FunctionCostJson]
    builds: list[BuildCostJson]
    build_minutes: list[ComputeTypeMinutesJson]
    unpriced: list[str]
    region: str
    prices_as_of: str
    currency: str
    excludes: list[str]


class CanaryProgressJson(TypedDict):
    step: int
    steps: int
    share: int | None
    effective_share: int | None
    verdicts: list[dict[str, Any]]


class BriefJson(TypedDict):
    deployment_id: str
    status: str
    started_at: str | None
    stopped_at: str | None


class RecordJson(TypedDict):
    deployment_id: str
    status: str
    execution_arn: NotRequired[str]
    started_at: str | None
    stopped_at: str | None
    current_step: NotRequired[str | None]
    steps: list[StepJson]
    builds: list[BuildJson]
    result: NotRequired[dict[str, Any]]
    error: NotRequired[ErrorJson]
    cost: NotRequired[CostJson]
    canary: NotRequired[CanaryProgressJson]


# the "from" key: functional form
ServedPeriodJson = TypedDict("ServedPeriodJson",
                             {"from": str, "to": str | None, "deployment_id": str})


class ModelJson(TypedDict):
    model_name: str
    serving_name: str
    live_version: str | None
    inference_url: str | None
    image_uri: str | None
    target: str | None
    live_since: str | None
    deployment_id: str | None


class ModelListJson(TypedDict):
    models: list[ModelJson]


class VersionJson(TypedDict):
    version: str
    live: bool
    created_at: str | None
    run_id: str | None
    image_uri: str | None
    served: list[ServedPeriodJson]


class ModelDetailJson(ModelJson):
    versions: list[VersionJson]


def error_json(doc: ErrorDocument) -> ErrorJson:
    return cast(ErrorJson, doc.model_dump())


def cost_json(receipt: CostReceipt) -> CostJson:
    return cast(CostJson, receipt.model_dump(mode="json"))


def brief(record: RecordJson | BriefJson) -> BriefJson:
    """A record as GET /deployments lists it."""
    return {"deployment_id": record["deployment_id"], "status": record["status"],
            "started_at": record.get("started_at"), "stopped_at": record.get("stopped_at")}
