"""The ML-backend routes, declared on the server's ``JsonApi`` under ``/label-studio``.

Served on the server's own port and process, so predictions share the audio store, the
kept segmentation runs and the loaded models with ``/get-labels``, and training jobs go
to the same queue (threads, or Celery workers with ``--broker``). Being routes of the same
``JsonApi``, they are validated by their pydantic models, described in ``/openapi.json``
and answer errors as JSON like every other route.

**Errors.** A refused request answers ``{"error": message}`` with a 4xx status whose
reason phrase is the message too: Label Studio keeps only ``str(HTTPError)`` of a failed
call (``"400 Client Error: <reason> for url: ..."``), which it shows when connecting the
model and stores as the model's error. A task that cannot be predicted (its audio URL
unreachable, refused or not audio) does not fail the batch: its item of ``results`` is
``{"task", "error"}`` without ``result``, which Label Studio logs and skips, storing the
other tasks' predictions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, request

from api.json_api import JsonApi
from audio.codec import AudioDecodeError, AudioTooLarge
from audio.url_fetch import UrlFetchError
from audio_store import UnknownAudio
from label_studio_backend.errors import LabelStudioError
from label_studio_backend.label_config import parse_label_config
from label_studio_backend.ls_api import LabelStudioApi
from label_studio_backend.predictions import predict_task
from label_studio_backend.projects import ProjectModels, project_id
from label_studio_backend.schemas import (
    LsHealthReply,
    LsJobStatusReply,
    LsJobStatusRequest,
    LsPredictReply,
    LsPredictRequest,
    LsSetupReply,
    LsSetupRequest,
    LsStatusReply,
    LsTaskError,
    LsTrainReply,
    LsTrainRequest,
    LsWebhookRequest,
)
from label_studio_backend.settings import LabelStudioSettings
from label_studio_backend.task_audio import TaskAudio
from label_studio_backend.training import start_training
from server.services import Services

log = logging.getLogger(__name__)

PREFIX = "/label-studio"
TAGS = ["Label Studio"]
STATE_FILE = "label-studio-projects.json"
MAX_REASON = 300
# Errors that spoil one task of a batch, not the whole request.
TASK_ERRORS = (LabelStudioError, UrlFetchError, AudioDecodeError, AudioTooLarge, UnknownAudio)
TRAINING_ACTIONS = ("START_TRAINING",)
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED")
JOB_STATUS = {
    "queued": "queued",
    "training": "started",
    "done": "finished",
    "failed": "failed",
    "cancelled": "stopped",
}


@dataclass(frozen=True)
class LabelStudioBackend:
    """The adapter's state on one app."""

    settings: LabelStudioSettings
    api: LabelStudioApi
    audio: TaskAudio
    projects: ProjectModels


def declare_routes(api: JsonApi) -> None:
    """Declare the protocol's routes on the server's ``JsonApi`` (before ``init_app``)."""
    post = {"status": 200, "tags": TAGS}
    api.get(PREFIX + "/health", reply=LsHealthReply, tags=TAGS)(health)
    api.post(PREFIX + "/setup", body=LsSetupRequest, reply=LsSetupReply, **post)(setup)
    api.post(PREFIX + "/predict", body=LsPredictRequest, reply=LsPredictReply, **post)(predict)
    api.post(
        PREFIX + "/webhook", body=LsWebhookRequest, reply=LsTrainReply | LsStatusReply, tags=TAGS
    )(webhook)
    api.post(PREFIX + "/train", body=LsTrainRequest, reply=LsTrainReply, tags=TAGS)(train)
    api.post(PREFIX + "/job_status", body=LsJobStatusRequest, reply=LsJobStatusReply, **post)(
        job_status
    )


def install(app: Flask, settings: LabelStudioSettings | None = None) -> LabelStudioBackend:
    """The adapter's state on ``app`` (made by ``backend.create_app``); ``settings`` default
    to the environment variables (``label_studio_backend.settings``)."""
    services: Services = app.extensions["whisperseg"]
    settings = settings or LabelStudioSettings()
    api = LabelStudioApi(settings)

    def starting_model() -> str:
        return settings.model or services.models.default_model_name

    backend = LabelStudioBackend(
        settings=settings,
        api=api,
        audio=TaskAudio(services.audio, api, services.settings),
        projects=ProjectModels(
            Path(services.settings.data_dir) / STATE_FILE, services.training, starting_model
        ),
    )
    app.extensions["label_studio"] = backend
    app.after_request(_error_as_reason_phrase)
    return backend


def _services() -> Services:
    return current_app.extensions["whisperseg"]


def _backend() -> LabelStudioBackend:
    return current_app.extensions["label_studio"]


def _project(uid: object) -> int:
    try:
        return project_id(uid)
    except ValueError as exc:
        raise LabelStudioError(400, f"project: {exc}") from None


def _model_for(project: int) -> str:
    """The project's model, checked to be ready and usable by the adapter's user."""
    backend, services = _backend(), _services()
    user = services.access.user(backend.settings.token)
    return services.access.usable_model(backend.projects.model(project), user)


def health() -> LsHealthReply:
    """Label Studio's liveness check (it only needs a 2xx)."""
    return LsHealthReply(status="UP", model_class="WhisperSeg")


def setup(body: LsSetupRequest) -> LsSetupReply:
    """Check the project's labelling config; answer the model its predictions come from."""
    parse_label_config(body.label_config)
    model = _model_for(_project(body.project))
    _backend().api.warm_up()
    return LsSetupReply(model_version=model)


def predict(body: LsPredictRequest) -> LsPredictReply:
    """One item of ``results`` per task, in order: its regions, or why it has none."""
    labelling = parse_label_config(body.label_config)
    project = _project(body.project)
    model = _model_for(project)
    backend, services = _backend(), _services()
    started = time.monotonic()
    results: list[Any] = []
    for task in body.tasks:
        try:
            results.append(
                predict_task(task, labelling, model, backend.audio, services.segmentation)
            )
        except TASK_ERRORS as exc:
            message = getattr(exc, "message", None) or str(exc)
            log.warning("label studio project %s task %s: %s", project, task.id, message)
            results.append(LsTaskError(task=task.id, error=f"Task {task.id}: {message}"))
    elapsed = time.monotonic() - started
    log.info(
        "label studio project %s: %d tasks with %s in %.2f s", project, len(results), model, elapsed
    )
    return LsPredictReply(results=results, model_version=model)


def webhook(body: LsWebhookRequest) -> LsTrainReply | LsStatusReply:
    """The training button (``START_TRAINING``); annotation events train only when
    ``WHISPERSEG_LABEL_STUDIO_TRAIN_ON_ANNOTATION`` is set; other events are ignored."""
    trains = body.action in TRAINING_ACTIONS or (
        body.action in ANNOTATION_ACTIONS and _backend().settings.train_on_annotation
    )
    if not trains:
        return LsStatusReply(status="ignored", message=f"{body.action} needs no action")
    return _train(_project(body.project.id if body.project else None))


def train(body: LsTrainRequest) -> LsTrainReply:
    """The older training call: the same as the ``START_TRAINING`` webhook."""
    return _train(_project(body.project))


def _train(project: int) -> LsTrainReply:
    backend, services = _backend(), _services()
    job, created = start_training(
        project, services, backend.api, backend.projects, backend.audio, backend.settings.token
    )
    verb = "queued" if created else "is already " + job.state
    message = (
        f"Finetuning job {job.name} {verb} (from {job.initial_model}); new predictions use "
        "its model once it is done with the verdict 'better'"
    )
    log.info("label studio project %s: %s", project, message)
    return LsTrainReply(
        job=job.name, state=job.state, model_version=job.initial_model, message=message
    )


def job_status(body: LsJobStatusRequest) -> LsJobStatusReply:
    """A training job's state in Label Studio's words; 410 for a job this server lacks."""
    job = _services().training.job(body.job)
    if job is None:
        raise LabelStudioError(410, f"No finetuning job named {body.job!r}")
    project = job.request.get("label_studio_project")
    model = None
    if not job.active and isinstance(project, int):
        model = _backend().projects.model(project)
    return LsJobStatusReply(
        job=job.name,
        job_status=JOB_STATUS[job.state],
        model_version=model,
        verdict=(job.validation.verdict if job.validation else None),
    )


def _error_as_reason_phrase(response: Response) -> Response:
    """Under the prefix, a JSON error's message becomes the reply's reason phrase too."""
    if response.status_code >= 400 and request.path.startswith(PREFIX) and response.is_json:
        message = (response.get_json(silent=True) or {}).get("error")
        if isinstance(message, str):
            response.status = f"{response.status_code} {reason_phrase(message)}"
    return response


def reason_phrase(message: str) -> str:
    """The message as an HTTP reason phrase: one line of printable ASCII, bounded."""
    text = " ".join(message.split()).encode("ascii", "replace").decode("ascii")
    text = "".join(c for c in text if c.isprintable())
    return text[:MAX_REASON] or "Error"
