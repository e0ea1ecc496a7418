"""Finetuning jobs run one at a time in a thread of the server (the embedded mode), and the
command that starts a Celery worker for the distributed mode.

A job's ``models/<name>/job.json`` is created when it is queued and rewritten on
every state change (and at most every ``write_interval_s`` during training), always
atomically (``jobs.store``); the job itself runs as on a worker
(``jobs.finetune.run_job``). Embedded jobs cannot outlive the process (their clips
live in memory): a new worker marks the ones it finds queued or training as failed.

``python finetune_worker.py --broker URL --models-dir DIR --data-dir DIR`` runs the
jobs of a server started with ``--broker URL`` instead (``distributed.worker``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from jobs.finetune import FINETUNE_DEFAULTS, run_job
from jobs.record import INTERRUPTED, JobRecord, JobState, UnknownJobError
from jobs.store import JobStore
from model_registry import ModelNameError, ModelRegistry
from whisperseg.adaptation import AdaptationConfig
from whisperseg.training import TrainingExample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pending:
    examples: list[TrainingExample]
    config: AdaptationConfig


class FinetuneWorker:
    """Queue of finetuning jobs for one models folder, trained by one daemon thread.

    Training loads its own copy of the initial model from disk, so the registry's
    cached inference models are never touched and inference goes on meanwhile.
    The queue and the records change under ``_lock``; a record shows an end only once it
    is in ``job.json`` (``JobStore``), so a name listed as cancelled is free on disk too.
    Call :meth:`close` when done: it stops the thread.
    """

    def __init__(
        self, registry: ModelRegistry, device: str | None = None, write_interval_s: float = 1.0
    ):
        self.registry = registry
        self.device = device or registry.device
        self.store = JobStore(registry.models_dir, write_interval_s)
        self._lock = threading.Condition()
        self._records: dict[str, JobRecord] = {}
        self._queue: deque[str] = deque()
        self._pending: dict[str, _Pending] = {}
        self._cancel_requested: set[str] = set()
        self._closed = False
        registry.models_dir.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._thread = threading.Thread(target=self._run, name="finetune-worker", daemon=True)
        self._thread.start()

    def _recover(self) -> None:
        """Load every job record; those a previous process left unfinished become failed."""
        for record in self.store.records():
            self._records[record.name] = record
            if record.active:
                record.finish("failed", INTERRUPTED)
                self.store.save(record)

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
            self.store.create(record)
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
            if record.state == "queued":  # written before it shows: the name is free then
                self._queue.remove(name)
                del self._pending[name]
                ended = dataclasses.replace(record)
                ended.finish("cancelled")
                self.store.save(ended)
                self._records[name] = record = ended
            else:
                self._cancel_requested.add(name)
            return dataclasses.replace(record)

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
            ended = [dataclasses.replace(self._records[name]) for name in dropped]
            self._lock.notify_all()
        for record in ended:
            self.store.save(record)
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
            self.store.save(record)
            try:
                ended = run_job(
                    self.store,
                    self.registry,
                    record,
                    lambda pending=pending: pending.examples,
                    pending.config,
                    self.device,
                    should_stop=lambda name=name: self._should_stop(name),
                    stopped=lambda name=name: self._stop_outcome(name),
                )
                with self._lock:
                    self._records[name] = ended
            except Exception:
                log.exception("finetune worker: bookkeeping of job %r failed", name)
            finally:
                with self._lock:
                    self._cancel_requested.discard(name)

    def _should_stop(self, name: str) -> bool:
        with self._lock:
            return self._closed or name in self._cancel_requested

    def _stop_outcome(self, name: str) -> tuple[JobState, str | None]:
        """A job stopped on request is cancelled; one stopped by closing, interrupted."""
        with self._lock:
            cancelled = name in self._cancel_requested
        return ("cancelled", None) if cancelled else ("failed", INTERRUPTED)


if __name__ == "__main__":
    from distributed.worker import main

    main()
