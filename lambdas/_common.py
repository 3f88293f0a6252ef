"""What every handler shares: Powertools instances and the step-name wrapper."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from trainship.errors import InternalError, TrainshipError, tail

logger = Logger(service="trainship")
tracer = Tracer(service="trainship")
metrics = Metrics(namespace="trainship", service="trainship")

T = TypeVar("T")


@contextmanager
def step(name: str) -> Iterator[None]:
    """Name the failing step in errors; count outcomes; never let a bare exception out."""
    try:
        yield
    except TrainshipError as exc:
        exc.step = exc.step or name
        metrics.add_metric(name=f"{name}Failed", unit=MetricUnit.Count, value=1)
        logger.warning("step failed", extra={"error": exc.name, "step": exc.step})
        raise
    except Exception as exc:
        metrics.add_metric(name=f"{name}Failed", unit=MetricUnit.Count, value=1)
        logger.exception("step crashed")
        raise InternalError(f"{name} crashed: {type(exc).__name__}: {exc}"[:500],
                            details=tail(traceback.format_exc()), step=name) from exc
    metrics.add_metric(name=f"{name}Succeeded", unit=MetricUnit.Count, value=1)


M = TypeVar("M", bound=BaseModel)


def step_handler(name: str, model: type[M]) -> Callable[
        [Callable[[M, LambdaContext], T]], Callable[[dict[str, Any], LambdaContext], T]]:
    """A state's Lambda: Powertools logging, tracing and metrics; the event parsed into
    ``model`` with the Powertools parser; every failure named after the state."""

    def decorate(fn: Callable[[M, LambdaContext], T]
                 ) -> Callable[[dict[str, Any], LambdaContext], T]:
        @functools.wraps(fn)
        def handler(event: dict[str, Any], context: LambdaContext) -> T:
            with step(name):
                return fn(parse(event=event, model=model), context)

        wrapped: Callable[[dict[str, Any], LambdaContext], T] = logger.inject_lambda_context(
            # no response in X-Ray: a result carries the model's inference token
            tracer.capture_lambda_handler(metrics.log_metrics(handler),
                                          capture_response=False))
        return wrapped

    return decorate
