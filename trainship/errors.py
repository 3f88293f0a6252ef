"""Error names, help texts and the error document.

Every failure a user can cause has its own exception class. The class name is the
error name everywhere: the Lambda's ``errorType``, the ASL ``ErrorEquals`` value, the
``error`` field of the error document and the Fail state's Error.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import BaseModel


class ErrorDocument(BaseModel):
    """What a user sees when something fails: API 4xx bodies, the Fail state's cause."""

    error: str
    message: str
    details: str = ""
    help: str = ""
    step: str | None = None

    def to_json(self) -> str:
        return self.model_dump_json()


class TrainshipError(Exception):
    """Base class. ``str(exc)`` is the JSON error document (Lambda's errorMessage)."""

    help_text: ClassVar[str] = "See docs/troubleshooting.md for this error name."
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: str = "", help: str | None = None,
                 step: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.help = help if help is not None else self.help_text
        self.step = step

    @property
    def name(self) -> str:
        return type(self).__name__

    def document(self) -> ErrorDocument:
        return ErrorDocument(error=self.name, message=self.message, details=self.details,
                             help=self.help, step=self.step)

    def __str__(self) -> str:
        return self.document().to_json()


# --- request ------------------------------------------------------------------------

class InvalidRequest(TrainshipError):
    http_status = 400
    help_text = (
        "Fix the request fields listed in details. Example body: "
        '{"model_name": "iris-classifier", "script": "import mlflow ...", '
        '"requirements": ["scikit-learn==1.9.1"], "timeout_seconds": 900}'
    )


class TargetNotEnabled(TrainshipError):
    http_status = 400
    help_text = (
        "Leave `target` out to use this stack's default, or pick one of the enabled targets "
        "named in details. Locally, podman is enabled when podman, buildah, docker-registry, "
        "debootstrap and catatonit are installed (apt-get install podman buildah "
        "docker-registry debootstrap catatonit runc); on AWS the target is kubernetes (EKS)."
    )


class DeploymentNotFound(TrainshipError):
    http_status = 404
    help_text = ("List deployments with `trainship list` or GET /deployments and use one of "
                 "their ids.")


class DeploymentNotRedrivable(TrainshipError):
    """A redrive (POST /deployments/{id}/redrive, `trainship redrive`) that cannot resume."""

    http_status = 409
    help_text = (
        "Only a FAILED, ABORTED or TIMED_OUT deployment can be redriven, within 14 days of "
        "stopping: a redrive resumes it at the step that failed (e.g. BuildImage after a "
        "registry outage, without training again). A request that failed ValidateRequest "
        "fails the same way again: fix the fields its error names and `trainship deploy` "
        "again (deploy again too for one that failed under an earlier state machine "
        "definition, whose failures were final). A RUNNING one is still going: follow it "
        "with `trainship status ID`; a SUCCEEDED one needs nothing."
    )


class ModelNotFound(TrainshipError):
    """GET /models/{name}, a rollback or a delete of a name the registry does not hold."""

    http_status = 404
    help_text = ("List the models trainship serves with `trainship models` or GET /models; "
                 "a model name is the model_name it was deployed with (e.g. test_model), "
                 "not its serving name (test-model).")


class ModelVersionNotFound(TrainshipError):
    """A rollback to a version the registered model does not have."""

    http_status = 404
    help_text = ("Name a version the model has: `trainship models NAME` lists its versions "
                 "and which served when (or see the model in the MLflow UI), e.g. "
                 "`trainship rollback test_model --to 1`.")


class VersionNeverServed(TrainshipError):
    """A rollback to a registered version that was never live (it has no image to serve)."""

    http_status = 409
    help_text = ("A rollback serves an earlier version again from the image it served with; "
                 "this version never went live (its deployment failed, or a higher version "
                 "was live first), so there is none. Roll back to a version that served "
                 "(`trainship models NAME` shows them), or deploy its script again with "
                 "`trainship deploy`.")


class VersionAlreadyLive(TrainshipError):
    """A rollback to the version that serves now: nothing to do."""

    http_status = 409
    help_text = ("This version is already live: nothing was changed. To serve another one, "
                 "name it with --to (`trainship models NAME` lists the versions that served).")


class ImageNotFound(TrainshipError):
    """A rollback to a version whose image is gone from the registry (e.g. expired)."""

    http_status = 409
    help_text = ("The image this version served with no longer exists in the image registry "
                 "(on AWS the ECR lifecycle policy expires images other than the live- and "
                 "previous- pinned ones). It cannot be served without a build: deploy its "
                 "script again with `trainship deploy`, which trains and builds a new version.")


def unrecorded_failure(error: str, cause: str, step: str | None) -> ErrorDocument:
    """The error document of an execution that failed at a step without RecordFailure
    (an error no Catch takes, e.g. States.Runtime): a redrive restarts that step."""
    return ErrorDocument(
        error=error, message=cause or f"{step or 'A step'} failed with {error}", step=step,
        help=(f"{step or 'A step'} stopped on {error} without the failure being recorded. "
              "Once its cause is fixed, resume from that step with `trainship redrive ID` (or "
              "`aws stepfunctions redrive-execution --execution-arn ARN`): the steps that "
              "succeeded, training among them, do not run again."))


# --- training -----------------------------------------------------------------------

class ScriptSyntaxError(TrainshipError):
    help_text = (
        "The script does not compile. Run `python -m py_compile train.py` locally and fix the "
        "line named in details before deploying again."
    )


class MissingRequirement(TrainshipError):
    help_text = (
        "The script imports a package that is not installed. Add it to `requirements`, e.g. "
        '"requirements": ["xgboost==2.1.4"] (the import name may differ from the package name).'
    )


class RequirementsInstallFailed(TrainshipError):
    help_text = (
        "pip could not install the requirements. Check the names and versions in details, e.g. "
        '"requirements": ["scikit-learn==1.9.1", "pandas>=2"].'
    )


class ScriptTimeout(TrainshipError):
    help_text = (
        "The script ran longer than timeout_seconds. Raise it (at most 7200), e.g. "
        '"timeout_seconds": 3600, or train on less data or fewer iterations.'
    )


class ScriptFailed(TrainshipError):
    help_text = (
        "The script raised an exception or exited with a non-zero status. Read the traceback "
        "in details (or `trainship logs ID`), fix the script and run it locally first."
    )


class NoMlflowRun(TrainshipError):
    help_text = (
        "The script must log to MLflow. Use `with mlflow.start_run():` (trainship binds it to "
        "the run it created) or `mlflow.autolog()`, and do not point MLFLOW_TRACKING_URI elsewhere."
    )


class NoModelLogged(TrainshipError):
    help_text = (
        "The MLflow run has no model. Log one, e.g. "
        '`mlflow.sklearn.log_model(model, name="model")` (MLflow 3) or '
        "`mlflow.sklearn.log_model(model, artifact_path=\"model\")` (MLflow 2)."
    )


class MultipleModelsLogged(TrainshipError):
    help_text = (
        'Log exactly one model, or name the one to deploy "model", e.g. '
        '`mlflow.sklearn.log_model(model, name="model")`.'
    )


class TrainingBuildFailed(TrainshipError):
    help_text = (
        "The training build failed outside the script (build environment, permissions, quota). "
        "Open the build log with `trainship logs ID`; retry once the cause is fixed."
    )


# --- registry / image / deploy -------------------------------------------------------

class RegistrationFailed(TrainshipError):
    help_text = (
        "MLflow refused to register the model version. Check that model_name is allowed in "
        "the registry and that the tracking server accepts writes; details has MLflow's answer."
    )


class ImageBuildFailed(TrainshipError):
    help_text = (
        "The inference image could not be built. The build log is in details; a common cause "
        "is a model requirement that does not install on the serving base image."
    )


class RolloutFailed(TrainshipError):
    help_text = (
        "The new version did not become ready (or failed its smoke test). The previous version "
        "keeps serving. Read the container log lines in details; check that the model loads "
        "with `mlflow.pyfunc.load_model` and that requests/limits fit."
    )


class CanaryFailed(TrainshipError):
    """A canary rollout (issue 15) rolled back: the new version broke a limit of its policy
    at a step (or stopped answering /metrics); JudgeCanary raises it."""

    help_text = (
        "The new version was rolled back during its canary: the previous version keeps the "
        "URL and all of the traffic, and the new version's pods or processes are gone. "
        "details has the numbers that decided it (the new and the old version's requests, "
        "5xx errors, error rate and p99 latency in the step, the limits) and every step "
        "judged so far. Look at the new version's errors and latency (`trainship logs ID`, "
        "its /metrics, the model's answers in the MLflow run) and fix the model; if the "
        "limits were too strict, relax them (--max-error-rate, --max-p99-ms, "
        "--canary-steps, --canary-interval, or the request's \"rollout\" object), or "
        "deploy with `--rollout all-at-once` to skip the canary."
    )


class TransientError(TrainshipError):
    """A dependency was briefly unavailable; the state machine retries it."""

    help_text = "A service trainship depends on was briefly unavailable; retrying usually works."


class TrainingRunnerFailed(TrainshipError):
    """trainship's own training runner crashed (not the script)."""

    help_text = (
        "trainship's training runner crashed outside the script; the script's own failures "
        "have their own names. The traceback is in details and `trainship logs ID`; please "
        "report it with the deployment id."
    )


class InternalError(TrainshipError):
    help_text = "An unexpected error inside trainship. Please report it with the deployment id."


def document_from_json(text: str) -> ErrorDocument | None:
    """Parse an error document (e.g. a Lambda errorMessage); None if it is not one."""
    try:
        data: Any = json.loads(text)
    except (TypeError, ValueError):
        return None
    if isinstance(data, dict) and "error" in data and "message" in data:
        try:
            return ErrorDocument.model_validate(data)
        except ValueError:
            return None
    return None


def document_from_cause(cause: str) -> ErrorDocument | None:
    """The error document in a failed execution's Cause: the document itself (a Fail
    state's CausePath), or Lambda's error payload whose errorMessage is the document (a
    Lambda Task that failed the execution: DeploymentFailed raises the recorded error)."""
    doc = document_from_json(cause)
    if doc is not None:
        return doc
    try:
        payload: Any = json.loads(cause)
    except (TypeError, ValueError):
        return None
    if isinstance(payload, dict) and isinstance(payload.get("errorMessage"), str):
        return document_from_json(payload["errorMessage"])
    return None


def tail(text: str, lines: int = 40, max_chars: int = 6000) -> str:
    """The last lines of a log, bounded so that it fits in a state payload."""
    kept = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return kept[-max_chars:]


class IdempotencyConflict(TrainshipError):
    http_status = 409
    help_text = ("This Idempotency-Key was used before with a different body. Use a new key "
                 "for a different request, or resend the original body unchanged.")


class ServingNameTaken(TrainshipError):
    """Two registered-model names that map to one serving name (trainship.names)."""

    http_status = 409
    help_text = (
        "Another registered model is already served under this model's serving name (model "
        "names map to DNS-1123 serving names: test_model, test.model and Test_Model are all "
        "test-model). Deploy under that registered model's name to add a version to it, or "
        "pick a model name whose serving name differs, e.g. test_model_2."
    )


class DeploymentInProgress(TrainshipError):
    """A rollback or a delete of a model while an execution for it runs (deploy, rollback or
    delete): refused before anything changes."""

    http_status = 409
    help_text = ("Another execution for this model is still running: wait for it with "
                 "`trainship status ID` (the id is in details; `trainship list` shows what "
                 "runs), then try again. Nothing was changed.")

    @classmethod
    def for_model(cls, model_name: str, running: list[str], *, refused: str,
                  verb: str) -> DeploymentInProgress:
        """``model_name`` has executions ``running``: what is refused while one runs
        (``refused``: "it is not deleted"), and what to ``verb`` again afterwards."""
        return cls(f"{model_name} has an execution running ({', '.join(running)}): "
                   f"{refused} while it is being deployed",
                   details="running: " + ", ".join(running),
                   help=f"Wait for it (`trainship status {running[0]}`), then {verb} again. "
                        "Nothing was changed.")


class AuthNotEnabled(TrainshipError):
    """A token rotation (`trainship token rotate NAME`) of a model whose URL is open (its
    auth is ``none``, or it was deployed before trainship had auth): there is no token to
    replace."""

    http_status = 409
    help_text = ("The model's URL answers anyone (auth none), so it has no token to rotate. "
                 "To require one, deploy it again with token auth: `trainship deploy "
                 "train.py --model-name NAME --auth token` (or \"auth\": \"token\" in the "
                 "request); the result carries the new token once. Nothing was changed.")


class RemovalFailed(TrainshipError):
    """RemoveModel could not take the model out of service (the cluster refused)."""

    help_text = ("The cluster refused to list or delete the model's objects. The identity "
                 "RemoveModel runs as needs list and delete on Deployments, Services, "
                 "NetworkPolicies, PodDisruptionBudgets and HorizontalPodAutoscalers in the "
                 "namespace (AmazonEKSEditPolicy through RemoveModel's EKS access entry). "
                 "Nothing that was removed comes back: run the delete again once fixed.")


class RegistryUnavailable(TrainshipError):
    """GET /models[/{name}]: MLflow did not answer the API in time, or refused it."""

    http_status = 503
    help_text = (
        "The API reads what serves from MLflow, which did not answer within the API's time "
        "budget (API Gateway waits 29 s) or refused the request; nothing was changed. Retry in "
        "a moment. If it persists, check the tracking server (on AWS: `aws sagemaker "
        "describe-mlflow-tracking-server`, and that the API function's role has the "
        "sagemaker-mlflow read actions; locally: mlflow.log in the state directory)."
    )

def _error_classes(base: type[TrainshipError]) -> list[type[TrainshipError]]:
    found: list[type[TrainshipError]] = []
    for cls in base.__subclasses__():
        found += [cls, *_error_classes(cls)]
    return found


# Every error name, derived from the classes (the name is the class name).
ERRORS: dict[str, type[TrainshipError]] = {cls.__name__: cls
                                          for cls in _error_classes(TrainshipError)}


def error_class(name: str) -> type[TrainshipError] | None:
    return ERRORS.get(name)
