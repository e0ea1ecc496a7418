"""Finetuning jobs run one at a time in a thread of the server (the embedded mode), and the
command that starts a Celery worker for the distributed mode.

A job's ``models/<name>/job.json`` is created when it is queued and rewritten on
every state change (and at most every ``write_interval_s`` during training), always
atomically (``jobs.finetune``). Embedded jobs cannot outlive the process (their clips
live in memory): a new worker marks the ones it finds queued or training as failed.

``python finetune_worker.py --broker URL --models-dir DIR --data-dir DIR`` runs the
jobs of a server started with ``--broker URL`` instead (``distributed.worker``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from jobs.finetune import FINETUNE_DEFAULTS, create_job_folder, install, stage_model, train_job
from jobs.record import INTERRUPTED, JobRecord, JobState, UnknownJobError
from model_registry import JOB_FILE, ModelNameError, ModelRegistry, read_job
from server.durable import write_json_atomic
from whisperseg.adaptation import AdaptationConfig
from whisperseg.training import TrainingCancelled, TrainingExample, TrainingProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pending:
    examples: list[TrainingExample]
    config: AdaptationConfig


class FinetuneWorker:
    """Queue of finetuning jobs for one models folder, trained by one daemon thread.

    Training loads its own copy of the initial model from disk, so the registry's
    cached inference models are never touched and inference goes on meanwhile.
    Job records change under ``_lock``; ``job.json`` files are written after it is
    released (in order, under ``_write_lock``), so listing jobs never waits on a disk.
    Call :meth:`close` when done: it stops the thread.
    """

    def __init__(
        self, registry: ModelRegistry, device: str | None = None, write_interval_s: float = 1.0
    ):
        self.registry = registry
        self.device = device or registry.device
        self.write_interval_s = write_interval_s
        self._lock = threading.Condition()
        self._write_lock = threading.Lock()
        self._records: dict[str, JobRecord] = {}
        self._queue: deque[str] = deque()
        self._pending: dict[str, _Pending] = {}
        self._cancel_requested: set[str] = set()
        self._closed = False
        self._last_write = 0.0
        registry.models_dir.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._thread = threading.Thread(target=self._run, name="finetune-worker", daemon=True)
        self._thread.start()

    def _folder(self, name: str) -> Path:
        return self.registry.models_dir / name

    def _recover(self) -> None:
        """Load every job record; those a previous process left unfinished become failed."""
        for folder in self.registry.folders():
            values = read_job(folder)
            if not values:
                continue
            record = JobRecord.from_dict(folder.name, values)
            self._records[record.name] = record
            if record.active:
                record.finish("failed", INTERRUPTED)
                self._persist(record.name)

    def _persist(self, name: str) -> None:
        """Write a job's current record to its ``job.json``; call without holding ``_lock``."""
        with self._write_lock:
            with self._lock:
                record = self._records.get(name)
                if record is None:
                    return
                values = asdict(record)
                self._last_write = time.monotonic()
            write_json_atomic(self._folder(name) / JOB_FILE, values)

    def submit(
        self,
        name: str,
        initial_model: str,
        examples: Sequence[TrainingExample],
        owner: str | None = None,
        request: dict | None = None,
        config: AdaptationConfig | None = None,
    ) -> JobRecord:
        """Queue a job; raises ModelNameError (bad or taken name), UnknownModelError."""
        record = JobRecord.new(name, initial_model, owner, request)
        with self._lock:
            if self._closed:
                raise RuntimeError("the finetune worker is closed")
            taken = self._records.get(name)
            if taken is not None and taken.active:
                raise ModelNameError(f"the name {name!r} is in use ({taken.state})")
            self.registry.validate_new_name(name)
            self._records.pop(name, None)  # a reused name is listed as the newest job
            self._records[name] = record  # reserves the name while the folder is made
        try:
            self.registry.whisperseg_folder(initial_model)
            create_job_folder(self.registry.models_dir, record)
        except BaseException:
            with self._lock:
                self._records.pop(name, None)
            raise
        with self._lock:
            self._pending[name] = _Pending(list(examples), config or FINETUNE_DEFAULTS)
            self._queue.append(name)
            self._lock.notify_all()
            return dataclasses.replace(record)

    def cancel(self, name: str) -> JobRecord:
        """Cancel a queued job now, or ask a running one to stop at its next step."""
        with self._lock:
            record = self._records.get(name)
            if record is None or not record.active:
                raise UnknownJobError(f"no queued or running job named {name!r}")
            queued = record.state == "queued"
            if queued:
                self._queue.remove(name)
                del self._pending[name]
                record.finish("cancelled")
            else:
                self._cancel_requested.add(name)
            snapshot = dataclasses.replace(record)
        if queued:
            self._persist(name)
        return snapshot

    def jobs(self) -> list[JobRecord]:
        """Every job this folder has seen (copies), oldest first."""
        with self._lock:
            records = [dataclasses.replace(r) for r in self._records.values()]
        return sorted(records, key=lambda r: r.created)

    def job(self, name: str) -> JobRecord | None:
        with self._lock:
            record = self._records.get(name)
            return None if record is None else dataclasses.replace(record)

    def close(self, timeout: float | None = None) -> None:
        """Stop: the running job stops at its next step; it and the queued ones are marked
        interrupted, as a restart would. Calling it again does nothing."""
        with self._lock:
            self._closed = True
            dropped = list(self._queue)
            self._queue.clear()
            for name in dropped:
                del self._pending[name]
                self._records[name].finish("failed", INTERRUPTED)
            self._lock.notify_all()
        for name in dropped:
            self._persist(name)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                name = self._queue.popleft()
                pending = self._pending.pop(name)
                record = self._records[name]
                record.start()
            self._persist(name)
            try:
                self._train(record, pending)
            except Exception:
                log.exception("finetune worker: bookkeeping of job %r failed", name)
            finally:
                with self._lock:
                    self._cancel_requested.discard(name)

    def _should_stop(self, name: str) -> bool:
        with self._lock:
            return self._closed or name in self._cancel_requested

    def _end(self, record: JobRecord, state: JobState, error: str | None = None) -> None:
        with self._lock:
            record.finish(state, error)
        self._persist(record.name)

    def _train(self, record: JobRecord, pending: _Pending) -> None:
        """Train one job and record how it ended; only bookkeeping errors escape."""
        name = record.name
        try:
            model, result = train_job(
                self.registry,
                record,
                pending.examples,
                pending.config,
                self.device,
                progress=lambda p: self._progress(record, p),
                should_stop=lambda: self._should_stop(name),
            )
            with self._lock:
                snapshot = dataclasses.replace(record)
            staging, done = stage_model(
                self.registry.models_dir, snapshot, model, result, self.device
            )
            with self._write_lock:
                install(staging, self._folder(name))
                with self._lock:
                    self._records[name] = done
        except TrainingCancelled:
            with self._lock:
                cancelled = name in self._cancel_requested
            self._end(record, *(("cancelled",) if cancelled else ("failed", INTERRUPTED)))
        except Exception as exc:
            log.exception("finetuning %r failed", name)
            self._end(record, "failed", str(exc) or type(exc).__name__)

    def _progress(self, record: JobRecord, progress: TrainingProgress) -> None:
        with self._lock:
            record.report(progress)
            due = time.monotonic() - self._last_write >= self.write_interval_s
        if due:
            self._persist(record.name)


if __name__ == "__main__":
    from distributed.worker import main

    main()
