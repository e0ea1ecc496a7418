"""The tasks a worker runs: finetuning jobs, segmentation jobs, corpus files.

Each may run more than once (a lost worker's task is handed to another): a finetuning
job counts its attempts in ``job.json`` and gives up after :data:`MAX_ATTEMPTS`; a
segmentation job resumes after the chunks already reported; a corpus file is written
atomically, so a second run only writes the same file again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from celery import Celery

from distributed import shared_audio
from distributed.app import FINETUNE_TASK, SEGMENT_FILE_TASK, SEGMENT_RUN_TASK
from distributed.messages import config_from_message, example_from_message
from distributed.state import SharedState
from inference.service import segment_channel
from jobs.finetune import run_job
from jobs.store import JobStore
from model_registry import ModelRegistry
from whisperseg.corpus import CorpusFile, segment_corpus_file
from whisperseg.files import load_model

log = logging.getLogger(__name__)
# A job whose worker was lost this many times is not handed out again: it may be what
# kills its workers (memory).
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class WorkerContext:
    """What every task of one worker process shares."""

    name: str  # the worker's, as its heartbeat says it
    registry: ModelRegistry
    audio_dir: Path
    state: SharedState
    jobs: JobStore
    device: str | None = None


def register(app: Celery, context: WorkerContext) -> None:
    """Declare the tasks on ``app``, bound to this worker's folders."""

    @app.task(name=FINETUNE_TASK)
    def finetune(message: dict) -> None:
        run_finetune(context, message)

    @app.task(name=SEGMENT_RUN_TASK)
    def segment_run(message: dict) -> None:
        run_segmentation(context, message)

    @app.task(name=SEGMENT_FILE_TASK, ignore_result=False)
    def segment_file(message: dict) -> dict:
        return run_corpus_file(context, message)


def run_finetune(context: WorkerContext, message: dict) -> None:
    """Train the job named in ``message`` unless it has ended or was cancelled meanwhile."""
    store = context.jobs
    record = store.load(message["name"])
    if record is None or not record.active:
        return  # gone, cancelled while queued, or a second delivery of a finished job
    job_id = record.task_id or record.name
    if context.state.cancel_requested(job_id):
        record.finish("cancelled")
    elif record.attempts >= MAX_ATTEMPTS:
        record.finish("failed", f"its worker was lost {record.attempts} times")
    else:
        record.start()
        record.worker = context.name
        store.save(record)
        run_job(
            store,
            context.registry,
            record,
            lambda: [example_from_message(context.audio_dir, e) for e in message["examples"]],
            config_from_message(message["config"]),
            context.device,
            should_stop=lambda: context.state.cancel_requested(job_id),
        )
        return
    store.save(record)


def run_segmentation(context: WorkerContext, message: dict) -> None:
    """Segment a shared channel chunk by chunk, appending each chunk to the run's events."""
    run_id, state = message["run_id"], context.state
    reported = [e["chunk"] for e in state.events(run_id) if e["kind"] == "chunk"]
    first = max(reported, default=-1) + 1  # a lost worker's chunks are not computed again
    state.push_event(run_id, {"kind": "started"})
    try:
        samples, sr = shared_audio.load(context.audio_dir, message["audio"])
        chunks = segment_channel(
            context.registry, message["model_name"], samples, sr, message["min_frequency"], first
        )
        index = first
        while not state.cancel_requested(run_id):
            found = next(chunks, None)
            if found is None:
                state.push_event(run_id, {"kind": "done"})
                return
            progress, segments = found
            rows = [list(asdict(s).values()) for s in segments]
            event = {"kind": "chunk", "chunk": index, "progress": progress, "segments": rows}
            state.push_event(run_id, event)
            index += 1
        state.push_event(run_id, {"kind": "cancelled"})
    except Exception as exc:
        log.exception("segmentation job %s failed", run_id)
        state.push_event(run_id, {"kind": "failed", "error": str(exc) or type(exc).__name__})


def run_corpus_file(context: WorkerContext, message: dict) -> dict:
    """Segment one file of a corpus and write its output beside the others."""
    job = CorpusFile.from_message(message)
    model = load_model(job.model, context.device)
    return asdict(segment_corpus_file(model, job))
