"""A finetuning job's record (``models/<name>/job.json``) and the interface of a job backend.

The server talks to one :class:`FinetuneJobs`: the embedded thread of ``finetune_worker``
or the Celery-backed ``distributed.finetune_jobs``. Both keep each job's record in its
model folder, so the models folder stays the single source of truth for what exists.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from whisperseg.adaptation import AdaptationConfig, Validation
from whisperseg.durable import utc_timestamp
from whisperseg.training import TrainingExample, TrainingProgress

INTERRUPTED = "interrupted by a server restart"
WAITING_ETA = "waiting for a worker"  # the ETA text of a job no live worker can take

JobState = Literal["queued", "training", "done", "failed", "cancelled"]
ACTIVE_STATES: tuple[JobState, ...] = ("queued", "training")


class UnknownJobError(LookupError):
    """No queued or running job of that name."""


class JobsUnavailable(RuntimeError):
    """The job queue cannot take or change a job now (broker down): try again later (503)."""


def format_eta(seconds: float | None) -> str:
    """``HH:MM:SS`` as the model lists show it; ``--:--:--`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "--:--:--"
    total = max(0, round(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


@dataclass
class JobRecord:
    """What ``job.json`` holds; times are ISO 8601 UTC, ``eta_s`` None while unknown.

    ``attempts`` counts the starts: above 1 when a worker was lost mid-job and another
    took the job over; ``task_id`` is the broker's id of a distributed job, ``worker``
    the Celery worker that last started it and ``queue`` the queue it was last sent to.
    ``history`` says what happened to a distributed job, oldest first (``"started on
    worker W at T"``, ``"requeued: worker W lost at T"``); ``waiting`` is not stored but
    filled in when a queued job is read: why it has not started (no live worker serves its
    queue), and then its ETA reads ``"waiting for a worker"``.
    """

    name: str
    initial_model: str
    owner: str | None = None
    request: dict = field(default_factory=dict)
    state: JobState = "queued"
    progress: float = 0.0
    eta_s: float | None = None
    loss: float | None = None
    error: str | None = None
    validation: Validation | None = None  # F1s on held-back labels, once measured
    created: str = field(default_factory=utc_timestamp)
    started: str | None = None
    finished: str | None = None
    attempts: int = 0
    task_id: str | None = None
    worker: str | None = None
    queue: str | None = None
    history: list[str] = field(default_factory=list)
    waiting: str | None = None

    @property
    def eta(self) -> str:
        if self.state == "queued" and self.waiting:
            return WAITING_ETA
        return format_eta(self.eta_s)

    @property
    def last_event(self) -> str | None:
        """What a person should know first: why it waits, else the latest of its history."""
        if self.active and self.waiting:
            return self.waiting
        return self.history[-1] if self.history else None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @classmethod
    def from_dict(cls, name: str, values: dict) -> JobRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if isinstance(values.get("validation"), dict):
            values["validation"] = Validation.from_dict(values["validation"])
        return cls(**{"initial_model": "", **values, "name": name})

    @classmethod
    def new(
        cls, name: str, initial_model: str, owner: str | None, request: dict | None
    ) -> JobRecord:
        """A queued record; a ``token`` key of the request is dropped (credentials stay
        off the disk)."""
        summary = {k: v for k, v in (request or {}).items() if k != "token"}
        return cls(name, initial_model, owner, summary)

    def start(self) -> None:
        """Mark a (re)started attempt."""
        self.state, self.started, self.attempts = "training", utc_timestamp(), self.attempts + 1
        self.progress, self.eta_s, self.error, self.waiting = 0.0, None, None, None

    def report(self, progress: TrainingProgress) -> None:
        """Take a training step's progress, loss and ETA."""
        self.progress, self.loss = progress.fraction, progress.loss
        self.eta_s = progress.eta_s if math.isfinite(progress.eta_s) else None

    def finish(self, state: JobState, error: str | None = None) -> None:
        """Mark the record ended (the caller persists it)."""
        self.state, self.error, self.eta_s, self.finished = state, error, None, utc_timestamp()


class FinetuneJobs(Protocol):
    """What the server asks of a job backend, embedded or distributed."""

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
        ...

    def cancel(self, name: str) -> JobRecord:
        """Cancel a queued job now, a running one at its next step; UnknownJobError."""
        ...

    def jobs(self) -> list[JobRecord]:
        """Every job of the models folder (copies), oldest first."""
        ...

    def job(self, name: str) -> JobRecord | None: ...

    def close(self, timeout: float | None = None) -> None: ...
