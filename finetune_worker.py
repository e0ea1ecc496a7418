"""Finetuning jobs, run one at a time in a background thread, each recorded in its model folder.

A job's ``models/<name>/job.json`` is created when it is queued and rewritten on
every state change (and at most every ``write_interval_s`` during training), always
atomically. The trained weights are saved to a hidden staging folder together with
the final ``job.json`` (state ``done``), and that folder is renamed into place, so a
model never looks ready half-written. Jobs cannot outlive the process (their clips
live in memory): a new worker marks the ones it finds queued or training as failed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from model_registry import (
    FINETUNED_CONFIG_KEY,
    JOB_FILE,
    ModelNameError,
    ModelRegistry,
    read_job,
)
from server.durable import utc_timestamp, write_json_atomic
from whisperseg import ct2
from whisperseg.adaptation import AdaptationConfig, AdaptationResult, adapt
from whisperseg.model import WhisperSegModel, make_ct2_copy, pick_device, replace_folder
from whisperseg.training import TrainingCancelled, TrainingExample, TrainingProgress

log = logging.getLogger(__name__)

# A job validates on held-back labels, then trains on all of them (whisperseg.adaptation);
# its defaults fit 45 s of labels in 5 minutes of a 2-core CPU.
FINETUNE_DEFAULTS = AdaptationConfig()


def finetune_config(total_steps: int) -> AdaptationConfig:
    """The default job with ``total_steps`` training steps: two thirds before validation,
    one third after it on all labels."""
    final = total_steps // 3
    training = dataclasses.replace(FINETUNE_DEFAULTS.training, max_steps=total_steps - final)
    return dataclasses.replace(FINETUNE_DEFAULTS, training=training, final_steps=final)


INTERRUPTED = "interrupted by a server restart"

JobState = Literal["queued", "training", "done", "failed", "cancelled"]
ACTIVE_STATES: tuple[JobState, ...] = ("queued", "training")


class UnknownJobError(LookupError):
    """No queued or running job of that name."""


def format_eta(seconds: float | None) -> str:
    """``HH:MM:SS`` as the model lists show it; ``--:--:--`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "--:--:--"
    total = max(0, round(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


@dataclass
class JobRecord:
    """What ``job.json`` holds; times are ISO 8601 UTC, ``eta_s`` None while unknown."""

    name: str
    initial_model: str
    owner: str | None = None
    request: dict = field(default_factory=dict)
    state: JobState = "queued"
    progress: float = 0.0
    eta_s: float | None = None
    loss: float | None = None
    error: str | None = None
    validation: dict | None = None  # F1s on held-back labels, once the job has them
    created: str = field(default_factory=utc_timestamp)
    started: str | None = None
    finished: str | None = None

    @property
    def eta(self) -> str:
        return format_eta(self.eta_s)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @classmethod
    def from_dict(cls, name: str, values: dict) -> JobRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        return cls(**{"initial_model": "", **values, "name": name})


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
                _finish(record, "failed", INTERRUPTED)
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
        """Queue a job; raises ModelNameError (bad or taken name), UnknownModelError.

        ``request`` is kept in ``job.json`` as a summary of what was asked (a
        ``token`` key is dropped: credentials stay off the disk).
        """
        summary = {k: v for k, v in (request or {}).items() if k != "token"}
        record = JobRecord(name, initial_model, owner, summary)
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
            staging = self._folder(f".{name}.{uuid.uuid4().hex}.new")
            staging.mkdir()
            write_json_atomic(staging / JOB_FILE, asdict(record))
            replace_folder(staging, self._folder(name))
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
                _finish(record, "cancelled")
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
                _finish(self._records[name], "failed", INTERRUPTED)
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
                record.state, record.started = "training", utc_timestamp()
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
            _finish(record, state, error)
        self._persist(record.name)

    def _train(self, record: JobRecord, pending: _Pending) -> None:
        """Train one job and record how it ended; only bookkeeping errors escape."""
        name = record.name
        try:
            base = WhisperSegModel.load(
                self.registry.whisperseg_folder(record.initial_model), device=self.device
            )
            model, result = adapt(
                base,
                pending.examples,
                pending.config,
                progress=lambda p: self._progress(record, p),
                should_stop=lambda: self._should_stop(name),
            )
            if self._should_stop(name):
                raise TrainingCancelled("finetuning cancelled")
            self._save(record, model, result)
        except TrainingCancelled:
            with self._lock:
                cancelled = name in self._cancel_requested
            self._end(record, *(("cancelled",) if cancelled else ("failed", INTERRUPTED)))
        except Exception as exc:
            log.exception("finetuning %r failed", name)
            self._end(record, "failed", str(exc) or type(exc).__name__)

    def _progress(self, record: JobRecord, progress: TrainingProgress) -> None:
        with self._lock:
            record.progress, record.loss = progress.fraction, progress.loss
            record.eta_s = progress.eta_s if math.isfinite(progress.eta_s) else None
            due = time.monotonic() - self._last_write >= self.write_interval_s
        if due:
            self._persist(record.name)

    def _save(self, record: JobRecord, model: WhisperSegModel, result: AdaptationResult) -> None:
        """Weights, model card and the ``done`` record staged together, renamed into place."""
        others = model.default_segmentation_config
        model.default_segmentation_config = {
            FINETUNED_CONFIG_KEY: result.segmentation,
            **{k: v for k, v in others.items() if k != FINETUNED_CONFIG_KEY},
        }
        staging = self._folder(f".{record.name}.{uuid.uuid4().hex}.done")
        try:
            model.save(staging)
            if ct2.available() and pick_device(self.device).type == "cuda":
                make_ct2_copy(staging)  # GPU inference decodes with it from the first request
            with self._lock:
                done = dataclasses.replace(
                    record,
                    state="done",
                    progress=1.0,
                    eta_s=0.0,
                    finished=utc_timestamp(),
                    validation=result.validation,
                )
            (staging / "README.md").write_text(model_card(done, result))
            with self._write_lock:
                write_json_atomic(staging / JOB_FILE, asdict(done))
                replace_folder(staging, self._folder(record.name))
                with self._lock:
                    self._records[record.name] = done
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def model_card(job: JobRecord, result: AdaptationResult) -> str:
    """The finetuned model's README: what it learned from and how well, measured."""
    v = result.validation
    request = job.request
    lines = [
        f"# {job.name}",
        "",
        f"Finetuned from `{job.initial_model}` on {request.get('num_human_labels', '?')} human "
        f"labels of {len(request.get('audio_ids', []))} recording(s), {job.finished}.",
        "",
        "## Validation on held-back labels",
        "",
        f"Before the final training on all labels, a copy trained without the last "
        f"{v['held_out_seconds']:.1f} s of annotated time ({v['held_out_segments']} labels) was "
        f"scored on them: segment F1 at {v['tolerance'] * 1000:.0f} ms"
        f"{', cluster names must match' if v.get('typed') else ''}.",
        "",
        "| segmenter | segment F1 |",
        "| --- | --- |",
        f"| `{job.initial_model}`, not finetuned | {v['base_segment_f1']:.3f} |",
        f"| `energy-threshold` | {v['energy_segment_f1']:.3f} |",
        f"| finetuned | {v['finetuned_segment_f1']:.3f} |",
        "",
        f"Verdict: **{v['verdict']}**"
        + (
            "."
            if v["verdict"] == "better"
            else " than the base model or the energy threshold: label more, or use those."
        ),
        "",
        "## Segmentation settings",
        "",
        "```json",
        json.dumps(result.segmentation, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def _finish(record: JobRecord, state: JobState, error: str | None = None) -> None:
    """Mark a record ended (in memory; the caller persists it)."""
    record.state, record.error, record.eta_s, record.finished = state, error, None, utc_timestamp()
