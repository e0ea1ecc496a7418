"""Segment stored channels: at once for /get-labels, in the background for segmentation jobs.

Both go through the same runs (``inference.runs``), so a job's labels are exactly what
get-labels answers, a repeated question is answered from the kept run, and a question
asked while the same run is computing waits for it rather than computing it twice. A
run nobody has started yet (queued behind another job) is taken over by the request
that needs it now. Background runs go to a :class:`RunQueue`: a thread of this process
(:class:`LocalRunQueue`) or Celery workers (``distributed.segmentation``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from audio.codec import to_float32
from audio_store import AudioStore
from inference.runs import RunKey, RunStatus, RunStore, SegmentationRun, compute
from model_registry import ENERGY_MODEL, ModelRegistry
from whisperseg.chunks import segment_in_chunks
from whisperseg.segment import Segment
from whisperseg.segmenters import (
    EnergySegmenter,
    Segmenter,
    WhisperSegSegmenter,
    served_config,
)

log = logging.getLogger(__name__)
# Retries when the run a request waited for was cancelled or failed under it.
MAX_ATTEMPTS = 3

Chunks = Iterator[tuple[float, list[Segment]]]


def segmenter_for(
    models: ModelRegistry, name: str, audio: np.ndarray, sr: int, min_frequency: float | None
) -> Segmenter:
    """Model ``name`` with the settings for this recording (``served_config``); the choice
    and its reason go to the server log."""
    if name == ENERGY_MODEL:
        return EnergySegmenter(min_frequency)
    model = models.load(name)
    choice = served_config(model, audio, sr, min_frequency)
    log.info("no species given: %s", choice.reason)
    return WhisperSegSegmenter(model, choice.config)


def segment_channel(
    models: ModelRegistry,
    model_name: str,
    samples: np.ndarray,
    sr: int,
    min_frequency: float | None,
    first_chunk: int = 0,
) -> Chunks:
    """(fraction done, segments) chunk by chunk from ``first_chunk``, with margins of two
    model contexts so a call across a chunk edge is found whole. Nothing runs (nor fails)
    before the first chunk is asked for."""
    segmenter = segmenter_for(models, model_name, samples, sr, min_frequency)

    def segment(part: np.ndarray) -> list[Segment]:
        return segmenter.segment(to_float32(part), sr)

    margin = 2 * segmenter.context_seconds
    yield from segment_in_chunks(segment, samples, sr, margin, first_chunk)


class RunQueue(Protocol):
    """Computes queued runs in the background, in the order they were put."""

    def put(self, run: SegmentationRun) -> None:
        """Queue a new run; raises JobsUnavailable when it cannot be queued."""
        ...

    def waiting(self, run_id: str) -> str | None:
        """Why a queued run has not started, when it is waiting for something it may
        never get (a worker); None otherwise."""
        ...

    def close(self, timeout: float | None = None) -> None:
        """Cancel the queued and running runs and stop."""
        ...


class LocalRunQueue:
    """One thread of this process computing runs one at a time (the embedded mode)."""

    def __init__(self, chunks: Callable[[RunKey], Chunks]):
        """``chunks(key)`` segments the channel of ``key`` lazily (``segment_channel``)."""
        self._chunks = chunks
        self._lock = threading.Condition()
        self._queue: deque[SegmentationRun] = deque()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="segmentation-jobs", daemon=True)
        self._thread.start()

    def put(self, run: SegmentationRun) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the segmentation queue is closed")
            self._queue.append(run)
            self._lock.notify_all()

    def waiting(self, run_id: str) -> str | None:
        """This process's own thread takes every run: none waits for anything else."""
        return None

    def close(self, timeout: float | None = None) -> None:
        """Calling it again does nothing."""
        with self._lock:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._lock.notify_all()
        for run in pending:
            run.cancel()
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                run = self._queue.popleft()
            if not run.try_start():
                continue  # cancelled, or taken over by a request that needed it first
            try:
                compute(run, self._chunks(run.key))
            except Exception:
                log.exception("segmentation job %s failed", run.run_id)


class SegmentationService:
    """Kept predictions, computed now for get-labels or queued as segmentation jobs."""

    def __init__(
        self,
        audio: AudioStore,
        models: ModelRegistry,
        runs: RunStore | None = None,
        queue: RunQueue | None = None,
    ):
        self.audio, self.models = audio, models
        self.runs = runs or RunStore()
        self.queue = queue or LocalRunQueue(self._chunks)

    def key(self, audio_id: str, model_name: str, min_frequency: float | None) -> RunKey:
        self.audio.get(audio_id)  # UnknownAudio (404) before anything is queued
        return RunKey(audio_id, model_name, self.models.identity(model_name), min_frequency)

    def predictions(self, key: RunKey) -> list[Segment]:
        """The segments of ``key``: kept, awaited, or computed now in this thread."""
        for _ in range(MAX_ATTEMPTS):
            run, _ = self.runs.claim(key)
            mine = run.try_start()
            status = compute(run, self._chunks(key)) if mine else run.wait()
            if status.state == "done":
                return status.segments
        raise RuntimeError(f"segmentation of {key.audio_id} was interrupted {MAX_ATTEMPTS} times")

    def submit(self, key: RunKey) -> RunStatus:
        """Queue a background run of ``key``, or return the one already live or done.

        A run the queue refuses (JobsUnavailable) is forgotten: no half-made job is left.
        """
        run, created = self.runs.claim(key)
        if created:
            try:
                self.queue.put(run)
            except BaseException:
                self.runs.remove(run)
                raise
        return run.status()

    def status(self, run_id: str) -> RunStatus:
        status = self.runs.get(run_id).status()
        if status.state == "queued":
            status = dataclasses.replace(status, waiting=self.queue.waiting(run_id))
        return status

    def cancel(self, run_id: str) -> RunStatus:
        run = self.runs.get(run_id)
        run.cancel()
        return run.status()

    def drop_audio(self, audio_id: str) -> None:
        self.runs.drop_audio(audio_id)

    def close(self, timeout: float | None = None) -> None:
        """Cancel queued and running jobs and stop; calling it again does nothing."""
        self.queue.close(timeout)

    def _chunks(self, key: RunKey) -> Chunks:
        """Lazy, like ``segment_channel``: a channel released meanwhile fails the run."""
        channel = self.audio.get(key.audio_id)
        yield from segment_channel(
            self.models, key.model_name, channel.samples, channel.sample_rate, key.min_frequency
        )
