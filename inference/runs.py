"""Segmentation runs: one per (audio, model, settings), kept once done, shared while running.

A run is what ``/get-labels`` and a segmentation job both wait for. The first to ask
for a key owns its run and computes it chunk by chunk (partial segments and progress
are visible meanwhile); everyone else asking for the same key waits on that run
instead of starting a second one. Finished runs are kept, least recently used
dropped first, within a bound on the segments held; a channel's runs go when it does.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Literal

from whisperseg.segment import Segment

RunState = Literal["queued", "running", "done", "failed", "cancelled"]
# About 150 MB of segments: hours of dense song for several recordings and models.
DEFAULT_MAX_KEPT_SEGMENTS = 1_000_000


class RunCancelled(Exception):
    """Raised inside a computation whose run was cancelled."""


class UnknownRunError(LookupError):
    """No segmentation job with that id."""


@dataclass(frozen=True, slots=True)
class RunKey:
    """What a run's segments depend on; ``model_identity`` changes with the weights."""

    audio_id: str
    model_name: str
    model_identity: Hashable
    min_frequency: float | None


@dataclass(frozen=True)
class RunStatus:
    """A snapshot of a run for replies: segments found so far, progress 0-1, ETA."""

    run_id: str
    state: RunState
    progress: float
    eta_s: float | None
    segments: list[Segment]
    error: str | None
    waiting: str | None = None  # why a queued run has not started (no live worker for it)


class SegmentationRun:
    """The segments of one key, filled in order while it is computed."""

    def __init__(self, key: RunKey):
        self.key = key
        self.run_id = str(uuid.uuid4())
        self._lock = threading.Condition()
        self._state: RunState = "queued"
        self._segments: list[Segment] = []
        self._progress = 0.0
        self._started: float | None = None
        self._error: str | None = None
        self._cancel = False

    @property
    def finished(self) -> bool:
        with self._lock:
            return self._state in ("done", "failed", "cancelled")

    @property
    def cancel_requested(self) -> bool:
        with self._lock:
            return self._cancel

    def status(self) -> RunStatus:
        with self._lock:
            eta = None
            if self._state == "running" and self._progress > 0 and self._started is not None:
                elapsed = time.monotonic() - self._started
                eta = elapsed / self._progress * (1 - self._progress)
            return RunStatus(
                self.run_id, self._state, self._progress, eta, list(self._segments), self._error
            )

    def try_start(self) -> bool:
        """Take a queued run over (True): whoever does computes it; False if taken or ended."""
        with self._lock:
            if self._state != "queued":
                return False
            self._state, self._started = "running", time.monotonic()
            return True

    def add(self, progress: float, segments: list[Segment]) -> None:
        """Record one more chunk; raises RunCancelled when a cancel was asked for."""
        with self._lock:
            if self._cancel:
                raise RunCancelled()
            self._segments.extend(segments)
            self._progress = progress

    def finish(self, state: RunState, error: str | None = None) -> None:
        with self._lock:
            self._state, self._error = state, error
            if state == "done":
                self._progress = 1.0
            self._lock.notify_all()

    def cancel(self) -> None:
        """A queued run ends now; a running one at its next chunk."""
        with self._lock:
            self._cancel = True
            if self._state == "queued":
                self._state = "cancelled"
                self._lock.notify_all()

    def wait(self, timeout: float | None = None) -> RunStatus:
        with self._lock:
            self._lock.wait_for(lambda: self._state in ("done", "failed", "cancelled"), timeout)
        return self.status()

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._segments)


class RunStore:
    """Runs by key and by id; thread-safe, bounded in the segments it keeps."""

    def __init__(self, max_kept_segments: int = DEFAULT_MAX_KEPT_SEGMENTS):
        self.max_kept_segments = max_kept_segments
        self._lock = threading.Lock()
        self._by_key: OrderedDict[RunKey, SegmentationRun] = OrderedDict()
        self._by_id: dict[str, SegmentationRun] = {}

    def claim(self, key: RunKey) -> tuple[SegmentationRun, bool]:
        """The live or done run of ``key`` and False, or a new run and True (compute it).

        Failed and cancelled runs are replaced, so asking again retries.
        """
        with self._lock:
            run = self._by_key.get(key)
            if run is not None and run.status().state not in ("failed", "cancelled"):
                self._by_key.move_to_end(key)
                return run, False
            run = SegmentationRun(key)
            self._by_key[key] = run
            self._by_id[run.run_id] = run
            self._trim()
            return run, True

    def get(self, run_id: str) -> SegmentationRun:
        with self._lock:
            run = self._by_id.get(run_id)
        if run is None:
            raise UnknownRunError(f"No segmentation job {run_id!r}")
        return run

    def known(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._by_id

    def adopt(self, run: SegmentationRun) -> None:
        """Keep a run made elsewhere (a job taken up after a server restart) under its id,
        and under its key unless a run of that key is already kept."""
        with self._lock:
            self._by_id[run.run_id] = run
            self._by_key.setdefault(run.key, run)
            self._trim()

    def remove(self, run: SegmentationRun) -> None:
        """Forget a run that could not be queued; it ends cancelled for anyone holding it."""
        with self._lock:
            if self._by_key.get(run.key) is run:
                del self._by_key[run.key]
            self._by_id.pop(run.run_id, None)
        run.cancel()

    def drop_audio(self, audio_id: str) -> None:
        """Forget the runs of a released channel (running ones are cancelled)."""
        with self._lock:
            dropped = [k for k in self._by_key if k.audio_id == audio_id]
            runs = [self._by_key.pop(k) for k in dropped]
            for run in runs:
                self._by_id.pop(run.run_id, None)
        for run in runs:
            run.cancel()

    def _trim(self) -> None:
        """Drop the least recently used finished runs beyond the segment bound."""
        kept = sum(run.size for run in self._by_key.values())
        for key in list(self._by_key):
            if kept <= self.max_kept_segments:
                return
            run = self._by_key[key]
            if run.finished:
                kept -= run.size
                del self._by_key[key]
                self._by_id.pop(run.run_id, None)


def compute(run: SegmentationRun, chunks: Iterable[tuple[float, list[Segment]]]) -> RunStatus:
    """Fill a started ``run`` from lazy ``chunks`` (progress, segments); record how it ended,
    errors of the chunks' first step included."""
    try:
        for progress, segments in chunks:
            run.add(progress, segments)
    except RunCancelled:
        run.finish("cancelled")
    except Exception as exc:
        run.finish("failed", str(exc) or type(exc).__name__)
        raise
    else:
        run.finish("done")
    return run.status()
