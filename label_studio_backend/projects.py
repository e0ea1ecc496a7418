"""Which model each Label Studio project uses, and its training job (a durable JSON file).

A project starts on the server's default model (or ``WHISPERSEG_LABEL_STUDIO_MODEL``).
Each training trigger queues one finetuning job named ``label-studio-<project>-<n>``. When
that job is done and its verdict is ``"better"``, the project switches to the new model;
a job that ends otherwise leaves the project's model as it was. The switch is made the
next time anything asks for the project's model, so it needs no thread of its own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from jobs.record import FinetuneJobs, JobRecord
from whisperseg.durable import write_json_atomic

JOB_PREFIX = "label-studio"


@dataclass
class ProjectState:
    model: str | None = None  # None: the starting model
    job: str | None = None  # the job whose verdict is awaited
    jobs: list[str] = field(default_factory=list)  # every job started, oldest first
    last_verdict: str | None = None


def project_id(uid: object) -> int:
    """Label Studio's project uid (``"<id>.<created timestamp>"``), an id or a project dict."""
    if isinstance(uid, dict):
        uid = uid.get("id")
    text = str(uid if uid is not None else "").split(".")[0].strip()
    if not text.isdigit():
        raise ValueError(f"not a Label Studio project id: {uid!r}")
    return int(text)


class ProjectModels:
    """Project id -> state, kept in ``path``; thread-safe."""

    def __init__(self, path: Path, training: FinetuneJobs, starting_model: Callable[[], str]):
        self.path, self.training, self.starting_model = path, training, starting_model
        self._lock = threading.Lock()
        self._states: dict[int, ProjectState] = {}
        if path.is_file():
            raw = json.loads(path.read_text())
            self._states = {int(k): ProjectState(**v) for k, v in raw.get("projects", {}).items()}

    def model(self, project: int) -> str:
        """The model the project's predictions use now (after promoting a finished job)."""
        with self._lock:
            state = self._settle(project)
            return state.model or self.starting_model()

    def active_job(self, project: int) -> JobRecord | None:
        """The project's queued or training job, if any."""
        with self._lock:
            state = self._settle(project)
            job = self.training.job(state.job) if state.job else None
            return job if job is not None and job.active else None

    def next_job_name(self, project: int, is_free: Callable[[str], bool]) -> str:
        with self._lock:
            n = len(self._state(project).jobs) + 1
        while not is_free(f"{JOB_PREFIX}-{project}-{n}"):
            n += 1
        return f"{JOB_PREFIX}-{project}-{n}"

    def started(self, project: int, job: str) -> None:
        with self._lock:
            state = self._state(project)
            state.job = job
            state.jobs.append(job)
            self._save()

    def state(self, project: int) -> ProjectState:
        with self._lock:
            return ProjectState(**asdict(self._settle(project)))

    def _state(self, project: int) -> ProjectState:
        return self._states.setdefault(project, ProjectState())

    def _settle(self, project: int) -> ProjectState:
        """Promote (or drop) the awaited job once it has ended; caller holds the lock."""
        state = self._state(project)
        if state.job is None:
            return state
        job = self.training.job(state.job)
        if job is not None and job.active:
            return state
        verdict = (job.validation.verdict if job and job.validation else None) or (
            job.state if job else "gone"
        )
        if job is not None and job.state == "done" and verdict == "better":
            state.model = job.name
        state.job, state.last_verdict = None, verdict
        self._save()
        return state

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"projects": {str(k): asdict(v) for k, v in sorted(self._states.items())}}
        write_json_atomic(self.path, data)
