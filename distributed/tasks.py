"""The tasks a worker runs: finetuning jobs, segmentation jobs, corpus files.

A finetuning or segmentation job runs under a lease (``distributed.lease``): a delivery
whose generation is stale, whose job is leased by a live worker, or whose job has ended is
dropped; a worker lost mid-job lets its lease lapse and the watch hands the job on. A
finetuning job counts its starts in ``job.json`` and says in its ``history`` who ran it; a
segmentation job resumes after the chunks already reported; a corpus file is written
atomically, so a second run only writes the same file again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from celery import Celery

from distributed import shared_audio
from distributed.app import FINETUNE_TASK, SEGMENT_FILE_TASK, SEGMENT_RUN_TASK
from distributed.lease import (
    FINETUNE,
    MAX_ATTEMPTS,
    SEGMENT,
    Lease,
    LeasedJobStore,
    LeaseTimes,
)
from distributed.messages import config_from_message, example_from_message
from distributed.state import SharedState
from inference.service import segment_channel
from jobs.finetune import run_job
from jobs.store import JobStore
from model_registry import ModelRegistry
from whisperseg.corpus import CorpusFile, segment_corpus_file
from whisperseg.durable import utc_timestamp
from whisperseg.files import load_model

log = logging.getLogger(__name__)
__all__ = ["MAX_ATTEMPTS", "WorkerContext", "register"]


@dataclass(frozen=True)
class WorkerContext:
    """What every task of one worker process shares."""

    name: str  # the worker's, as its heartbeat says it
    registry: ModelRegistry
    audio_dir: Path
    state: SharedState
    jobs: JobStore
    device: str | None = None
    lease_times: LeaseTimes = field(default_factory=LeaseTimes)


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


def _take_lease(
    context: WorkerContext, message: dict, kind: str, name: str
) -> tuple[Lease | None, str | None]:
    """(this delivery's lease, or None when the delivery must be dropped; a note when it
    takes over a lost worker's lapsed lease that the watch had not handed on yet)."""
    token = message["lease"]
    lease, why, previous = Lease.acquire(
        context.state.client, token, context.name, kind, name, context.lease_times
    )
    if lease is None:
        log.warning(
            "dropping a delivery of job %s (generation %s): %s",
            token["job"],
            token["generation"],
            {
                "stale": "a newer delivery replaced it",
                "busy": "a live worker runs the job",
                "ended": "the job has ended",
                "unknown": "the job is not registered",
            }.get(why, why),
        )
    if lease is None or previous is None:
        return lease, None
    return lease, f"requeued: worker {previous['worker']} lost at {utc_timestamp()}"


def run_finetune(context: WorkerContext, message: dict) -> None:
    """Train the job named in ``message`` unless it has ended or was cancelled meanwhile."""
    leased = "lease" in message  # a message sent by an older server runs unleased
    lease, note = (None, None)
    if leased:
        lease, note = _take_lease(context, message, FINETUNE, message["name"])
    if leased and lease is None:
        return
    ended = True
    try:
        ended = _finetune(context, message, lease, note)
    finally:
        if lease is not None:
            lease.release(ended=ended)


def _finetune(context: WorkerContext, message: dict, lease: Lease | None, note: str | None) -> bool:
    """Run the job; whether it ended (False: stopped because its lease was lost)."""
    store = context.jobs if lease is None else LeasedJobStore(context.jobs.models_dir, lease)
    record = store.load(message["name"])
    if record is None or not record.active:
        return True  # gone, cancelled while queued, or a second delivery of a finished job
    job_id = record.task_id or record.name
    if context.state.cancel_requested(job_id):
        record.finish("cancelled")
    elif record.attempts >= MAX_ATTEMPTS:
        record.finish("failed", f"its worker was lost {record.attempts} times")
    else:
        record.start()
        record.worker = context.name
        if note:
            record.history.append(note)
        record.history.append(
            f"started on worker {context.name} at {record.started} (attempt {record.attempts})"
        )
        store.save(record)
        run_job(
            store,
            context.registry,
            record,
            lambda: [example_from_message(context.audio_dir, e) for e in message["examples"]],
            config_from_message(message["config"]),
            context.device,
            should_stop=lambda: (
                context.state.cancel_requested(job_id) or (lease is not None and lease.lost)
            ),
            stopped=lambda: ("cancelled", None),
        )
        return lease is None or not lease.lost
    store.save(record)
    return True


def run_segmentation(context: WorkerContext, message: dict) -> None:
    """Segment a shared channel chunk by chunk, appending each chunk to the run's events."""
    run_id, state = message["run_id"], context.state
    leased = "lease" in message
    lease, note = (None, None)
    if leased:
        lease, note = _take_lease(context, message, SEGMENT, run_id)
    if leased and lease is None:
        return
    push = state.push_event if lease is None else (lambda r, e: lease.push_event(r, e))
    if note:
        push(run_id, {"kind": "requeued", "note": note})
    try:
        _segment(context, message, push, lease)
    finally:
        if lease is not None:
            lease.release(ended=not lease.lost)


def _segment(context: WorkerContext, message: dict, push, lease: Lease | None) -> None:
    run_id, state = message["run_id"], context.state
    reported = [e["chunk"] for e in state.events(run_id) if e["kind"] == "chunk"]
    first = max(reported, default=-1) + 1  # a lost worker's chunks are not computed again
    push(run_id, {"kind": "started", "worker": context.name, "at": utc_timestamp()})
    try:
        samples, sr = shared_audio.load(context.audio_dir, message["audio"])
        chunks = segment_channel(
            context.registry, message["model_name"], samples, sr, message["min_frequency"], first
        )
        index = first
        while not state.cancel_requested(run_id):
            if lease is not None and lease.lost:
                return  # handed to another worker: it goes on from the chunks reported
            found = next(chunks, None)
            if found is None:
                push(run_id, {"kind": "done"})
                return
            progress, segments = found
            rows = [list(asdict(s).values()) for s in segments]
            event = {"kind": "chunk", "chunk": index, "progress": progress, "segments": rows}
            push(run_id, event)
            index += 1
        push(run_id, {"kind": "cancelled"})
    except Exception as exc:
        log.exception("segmentation job %s failed", run_id)
        push(run_id, {"kind": "failed", "error": str(exc) or type(exc).__name__})


def run_corpus_file(context: WorkerContext, message: dict) -> dict:
    """Segment one file of a corpus and write its output beside the others."""
    job = CorpusFile.from_message(message)
    model = load_model(job.model, context.device)
    return asdict(segment_corpus_file(model, job))
