"""The one owner of each job's ``models/<name>/job.json``: create, load, save.

Both job backends, the server's thread (``finetune_worker``) and the Celery tasks
(``distributed.tasks``), keep their records through a :class:`JobStore`, so the models
folder stays the single source of truth for what exists, whichever process wrote it.
Every write is atomic; progress writes are throttled per job.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from jobs.record import JobRecord
from model_registry import JOB_FILE, read_job
from whisperseg.durable import write_json_atomic
from whisperseg.folder_swap import replace_folder


class JobStore:
    """Job records of one models folder; safe to share across threads (writes in order)."""

    def __init__(self, models_dir: Path, write_interval_s: float = 1.0):
        self.models_dir = Path(models_dir)
        self.write_interval_s = write_interval_s
        self._write_lock = threading.Lock()
        self._last_write: dict[str, float] = {}

    def folder(self, name: str) -> Path:
        return self.models_dir / name

    def load(self, name: str) -> JobRecord | None:
        """The record in ``name``'s folder; None when there is none or it cannot be read."""
        values = read_job(self.folder(name))
        return JobRecord.from_dict(name, values) if values else None

    def records(self) -> list[JobRecord]:
        """Every record of the folder (hidden staging folders left out), oldest first."""
        if not self.models_dir.is_dir():
            return []
        names = [p.name for p in self.models_dir.iterdir() if p.is_dir() and p.name[0] != "."]
        records = [self.load(name) for name in names]
        return sorted((r for r in records if r is not None), key=lambda r: r.created)

    def save(self, record: JobRecord, folder: Path | None = None) -> None:
        """Write ``record`` to its folder's ``job.json`` (or to ``folder``, a staging one)."""
        with self._write_lock:
            write_json_atomic((folder or self.folder(record.name)) / JOB_FILE, asdict(record))
            self._last_write[record.name] = time.monotonic()

    def save_progress(self, record: JobRecord) -> None:
        """Save unless this job's record was written less than the interval ago."""
        if time.monotonic() - self._last_write.get(record.name, 0.0) >= self.write_interval_s:
            self.save(record)

    def create(self, record: JobRecord) -> None:
        """``models/<name>/job.json`` in one rename: the folder never exists without it."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staging = self.models_dir / f".{record.name}.{uuid.uuid4().hex}.new"
        staging.mkdir()
        self.save(record, staging)
        replace_folder(staging, self.folder(record.name))

    def staging_folder(self, name: str) -> Path:
        """A hidden folder to build a finished model in, beside the job's folder."""
        return self.models_dir / f".{name}.{uuid.uuid4().hex}.done"

    def install(self, staging: Path, name: str) -> None:
        """Rename a staged model folder to the job's; the staging folder is gone either way."""
        try:
            with self._write_lock:
                replace_folder(staging, self.folder(name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
