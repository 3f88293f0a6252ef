"""The API's records are described twice (trainship.records): the pydantic models that
docs/openapi.json is generated from, and the TypedDicts code holds the JSON in. They name
the same keys and agree on which are required."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from trainship import cost, records
from trainship.errors import ErrorDocument

PAIRS: list[tuple[Any, type[BaseModel]]] = [
    (records.AcceptedJson, records.Accepted),
    (records.BriefJson, records.DeploymentBrief),
    (records.StepJson, records.StepRecord),
    (records.BuildJson, records.BuildRecord),
    (records.RecordJson, records.DeploymentRecord),
    (records.ErrorJson, ErrorDocument),
    (records.CostJson, cost.CostReceipt),
    (records.FunctionCostJson, cost.FunctionCost),
    (records.BuildCostJson, cost.BuildCost),
    (records.ComputeTypeMinutesJson, cost.ComputeTypeMinutes),
    (records.ModelListJson, records.ModelList),
    (records.ModelJson, records.ModelRecord),
    (records.ModelDetailJson, records.ModelDetail),
    (records.VersionJson, records.VersionRecord),
    (records.ServedPeriodJson, records.ServedPeriod),
    (records.CanaryProgressJson, records.CanaryProgress),
]


def keys(model: type[BaseModel]) -> set[str]:
    """The JSON keys: a field's alias where it has one ("from" is the field from_)."""
    return {field.alias or name for name, field in model.model_fields.items()}


def required_fields(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()
            if field.is_required()}


@pytest.mark.parametrize("typed_dict,model", PAIRS,
                         ids=[model.__name__ for _, model in PAIRS])
def test_each_typed_dict_matches_its_model(typed_dict: Any, model: type[BaseModel]) -> None:
    assert set(typed_dict.__annotations__) == keys(model)
    assert set(typed_dict.__required_keys__) == required_fields(model)


def test_the_check_sees_a_key_the_model_lacks() -> None:
    class Extra(records.BriefJson):
        extra: str

    assert set(Extra.__annotations__) != set(records.DeploymentBrief.model_fields)


def test_an_answer_has_only_the_keys_the_record_has() -> None:
    running = {"deployment_id": "d-1", "status": "RUNNING", "execution_arn": "arn",
               "started_at": "2026-01-01T00:00:00+00:00", "stopped_at": None,
               "current_step": "TrainModel",
               "steps": [{"name": "TrainModel", "status": "RUNNING", "entered": None}],
               "builds": []}
    assert records.answer(records.DeploymentRecord.model_validate(running)) == running
    failed = {**running, "status": "FAILED",
              "error": {"error": "ScriptFailed", "message": "m", "details": "", "help": "h",
                        "step": None}}
    assert records.answer(records.DeploymentRecord.model_validate(failed)) == failed


def test_brief_is_the_listed_part_of_a_record() -> None:
    record: records.RecordJson = {"deployment_id": "d-1", "status": "FAILED",
                                  "started_at": "a", "stopped_at": "b", "steps": [],
                                  "builds": []}
    assert records.brief(record) == {"deployment_id": "d-1", "status": "FAILED",
                                     "started_at": "a", "stopped_at": "b"}
