"""Finetuning jobs as Celery tasks: the server's side of the distributed mode.

The server validates a request, writes the clips to the shared audio folder, creates
the job's folder with its ``job.json`` (state ``queued``) and sends the task; a broker
that is down makes the submit fail with JobsUnavailable (503) and leaves no folder. From
then on the worker writes the record (``distributed.tasks``) and the server reads it:
job lists come from the models folder, whichever process changed it. A queued job that no
live worker can take (none serves its queue) is reported as waiting for one.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from distributed.app import CPU_QUEUE, FINETUNE_TASK
from distributed.broker import Broker
from distributed.lease import FINETUNE, waiting_note
from distributed.messages import config_to_message, example_to_message
from jobs.finetune import FINETUNE_DEFAULTS
from jobs.record import JobRecord, UnknownJobError
from jobs.store import JobStore
from model_registry import ModelRegistry
from whisperseg.adaptation import AdaptationConfig
from whisperseg.training import TrainingExample

# A finished model replaces the job's folder in two renames; a read falling between them
# finds no folder and looks again.
REREAD_DELAYS_S = (0.01, 0.05, 0.2)


class CeleryFinetuneJobs:
    """Submits finetuning jobs to the broker and reports them from their ``job.json``."""

    def __init__(self, registry: ModelRegistry, broker: Broker, audio_dir: Path):
        self.registry, self.broker, self.audio_dir = registry, broker, audio_dir
        self.store = JobStore(registry.models_dir)
        self._submitting = threading.Lock()  # one name check and folder creation at a time
        registry.models_dir.mkdir(parents=True, exist_ok=True)

    def submit(
        self,
        name: str,
        initial_model: str,
        examples: Sequence[TrainingExample],
        owner: str | None = None,
        request: dict | None = None,
        config: AdaptationConfig | None = None,
    ) -> JobRecord:
        """Queue a job; raises ModelNameError, UnknownModelError, JobsUnavailable."""
        record = JobRecord.new(name, initial_model, owner, request)
        record.task_id = f"finetune-{name}-{uuid.uuid4().hex}"
        with self._submitting:
            self.registry.validate_new_name(name)
            self.registry.whisperseg_folder(initial_model)
            message = {
                "name": name,
                "examples": [example_to_message(self.audio_dir, e) for e in examples],
                "config": config_to_message(config or FINETUNE_DEFAULTS),
            }
            record.queue = self.broker.queue_for(wants_gpu=True)
            record.history.append(f"queued on {record.queue!r} at {record.created}")
            self.store.create(record)
            try:
                self.broker.submit_job(
                    record.task_id, FINETUNE, FINETUNE_TASK, message, True, name, queue=record.queue
                )
            except BaseException:
                shutil.rmtree(self.registry.models_dir / name, ignore_errors=True)
                raise
        return record

    def cancel(self, name: str) -> JobRecord:
        """Flag the job for its worker; a queued one is also marked cancelled now."""
        record = self.job(name)
        if record is None or not record.active:
            raise UnknownJobError(f"no queued or running job named {name!r}")
        queued = record.state == "queued"
        self.broker.cancel(record.task_id or name, revoke=queued)
        if queued:
            record.finish("cancelled")
            self.store.save(record)
        return dataclasses.replace(record)

    def jobs(self) -> list[JobRecord]:
        return self._noted(self.store.records())

    def job(self, name: str) -> JobRecord | None:
        for delay in REREAD_DELAYS_S:
            record = self.store.load(name)
            if record is not None or not any(self._staged(name)):
                return self._noted([record])[0] if record else None
            time.sleep(delay)
        record = self.store.load(name)
        return self._noted([record])[0] if record else None

    def _noted(self, records: list[JobRecord]) -> list[JobRecord]:
        """Queued records say so when no live worker serves their queue."""
        queued = [r for r in records if r.state == "queued"]
        if queued:
            live: set[str] | None = None

            def served() -> set[str]:
                nonlocal live
                if live is None:
                    live = self.broker.state.live_queues()
                return live

            for record in queued:
                record.waiting = waiting_note(record.queue or CPU_QUEUE, served)
        return records

    def close(self, timeout: float | None = None) -> None:
        """Jobs belong to the workers: closing the server leaves them running."""
        self.broker.close()

    def _staged(self, name: str):
        return self.registry.models_dir.glob(f".{name}.*")
