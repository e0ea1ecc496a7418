"""Label Studio's training trigger -> one finetuning job on this server's queue.

The project's annotated tasks are read through Label Studio's API. For each task, its
latest annotation that was not cancelled gives the human labels: every region of the
config's ``<Labels>`` control over the audio, labelled with its (first) label value. The
annotated area is the whole task, unless some regions carry the ``Annotated area`` label:
then those regions are the annotated areas (the rest of the recording is left out). The
job starts from the project's current model, with the server's finetuning settings
(``--finetune-max-steps``), embedded or on workers alike; see ``projects`` for when its
model takes over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from annotations.labels import Label, LabelledRecording, training_clips
from audio.codec import to_float32
from jobs.finetune import finetune_config
from jobs.record import JobRecord
from label_studio_backend.errors import LabelStudioError
from label_studio_backend.label_config import AudioLabelling, is_area_label, parse_label_config
from label_studio_backend.ls_api import LabelStudioApi, usable_annotations
from label_studio_backend.projects import ProjectModels
from label_studio_backend.task_audio import TaskAudio
from model_registry import ModelNameError
from server.services import Services


@dataclass(frozen=True)
class AnnotatedTask:
    task_id: int
    url: object
    areas: list[tuple[float, float]]  # empty: the whole task
    labels: list[Label]


def annotated_task(task: dict[str, Any], labelling: AudioLabelling) -> AnnotatedTask | None:
    """The human labels of a task's latest usable annotation; None without any region."""
    annotations = usable_annotations(task)
    if not annotations:
        return None
    latest = max(annotations, key=lambda a: (str(a.get("updated_at") or ""), a.get("id") or 0))
    areas, labels = [], []
    for item in latest.get("result") or []:
        region = _region(item, labelling)
        if region is None:
            continue
        start, end, value = region
        if is_area_label(value):
            areas.append((start, end))
        else:
            labels.append(Label(start, end, clustername=value))
    if not labels and not areas:
        return None
    data = task.get("data") or {}
    return AnnotatedTask(int(task["id"]), data.get(labelling.data_key), areas, labels)


def _region(item: Any, labelling: AudioLabelling) -> tuple[float, float, str] | None:
    if not isinstance(item, dict) or item.get("from_name") != labelling.from_name:
        return None
    value = item.get("value") or {}
    names = value.get("labels") or []
    try:
        start, end = float(value["start"]), float(value["end"])
    except (KeyError, TypeError, ValueError):
        return None
    if not names or not end > start:
        return None
    return start, end, str(names[0])


def start_training(
    project: int,
    services: Services,
    api: LabelStudioApi,
    projects: ProjectModels,
    audio: TaskAudio,
    token: str | None,
) -> tuple[JobRecord, bool]:
    """(the project's job, True if it was queued now); a job already queued or training for
    the project is returned instead of starting a second one."""
    active = projects.active_job(project)
    if active is not None:
        return active, False
    api.require("Training from Label Studio")
    user = services.access.user(token, "train")
    labelling = parse_label_config(api.label_config(project))
    tasks = [annotated_task(t, labelling) for t in api.annotated_tasks(project)]
    tasks = [t for t in tasks if t is not None]
    if not tasks:
        raise LabelStudioError(
            400,
            f"Project {project} has no annotations to train on: label some tasks with the "
            f"<Labels name={labelling.from_name!r}> regions first",
        )
    recordings = [_recording(t, audio) for t in tasks]
    examples = training_clips(recordings)
    initial = services.access.usable_model(projects.model(project), user)
    name = projects.next_job_name(project, lambda n: _is_free(services, n))
    summary = {
        "source": "label-studio",
        "label_studio_project": project,
        "label_studio_tasks": [t.task_id for t in tasks],
        "labels": sum(len(t.labels) for t in tasks),
    }
    config = finetune_config(services.settings.finetune_max_steps)
    job = services.training.submit(name, initial, examples, user, summary, config)
    projects.started(project, name)
    return job, True


def _recording(task: AnnotatedTask, audio: TaskAudio) -> LabelledRecording:
    try:
        _, channel = audio.channel(task.url)
    except LabelStudioError as exc:
        raise LabelStudioError(exc.status, f"Task {task.task_id}: {exc.message}") from None
    areas = task.areas or [(0.0, channel.duration)]
    return LabelledRecording(to_float32(channel.samples), channel.sample_rate, areas, task.labels)


def _is_free(services: Services, name: str) -> bool:
    try:
        services.models.validate_new_name(name)
    except ModelNameError:
        return False
    return True
