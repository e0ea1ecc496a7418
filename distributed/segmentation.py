"""Segmentation jobs computed by Celery workers, followed into the server's runs.

``put`` shares the channel's audio, sends the task (JobsUnavailable when the broker is
down, and the run is forgotten) and follows the run: a thread reads the events the
worker appends (``state``), feeds each chunk to the run as the embedded thread would,
and passes a cancel on to the worker. So kept predictions, waiting get-labels and
partial labels behave as in the embedded mode. A worker lost mid-run leaves its task
to another, which resumes after the chunks already reported; repeated chunks are ignored.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from audio_store import AudioStore
from distributed import shared_audio
from distributed.app import SEGMENT_RUN_TASK
from distributed.broker import UNREACHABLE, Broker
from inference.runs import RunCancelled, SegmentationRun
from jobs.record import JobsUnavailable
from model_registry import ENERGY_MODEL
from whisperseg.segment import Segment

log = logging.getLogger(__name__)
POLL_S = 0.2


@dataclass
class _Followed:
    run: SegmentationRun
    audio: str  # the shared file its worker reads
    events_read: int = 0
    chunks_taken: int = 0
    cancel_sent: bool = False


class CeleryRunQueue:
    """Sends each run to the workers and mirrors its progress (a ``RunQueue``)."""

    def __init__(self, broker: Broker, audio: AudioStore, audio_dir: Path):
        self.broker, self.audio, self.audio_dir = broker, audio, audio_dir
        self._lock = threading.Lock()
        self._followed: dict[str, _Followed] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="segmentation-jobs", daemon=True)
        self._thread.start()

    def put(self, run: SegmentationRun) -> None:
        key = run.key
        channel = self.audio.get(key.audio_id)
        name = shared_audio.file_name(channel.samples, channel.sample_rate)
        with self._lock:  # followed before written: no other run's end deletes it meanwhile
            self._followed[run.run_id] = _Followed(run, name)
        message = {
            "run_id": run.run_id,
            "audio": name,
            "model_name": key.model_name,
            "min_frequency": key.min_frequency,
        }
        try:
            shared_audio.write(self.audio_dir, name, channel.samples, channel.sample_rate)
            queue = self.broker.queue_for(wants_gpu=key.model_name != ENERGY_MODEL)
            self.broker.send(SEGMENT_RUN_TASK, message, queue, task_id=run.run_id)
        except BaseException:
            self._forget(run.run_id)
            raise

    def close(self, timeout: float | None = None) -> None:
        """Stop following: the runs end cancelled here, their workers are told to stop."""
        self._stop.set()
        self._thread.join(timeout)
        with self._lock:
            followed = list(self._followed.values())
        for entry in followed:
            entry.run.cancel()
            entry.run.finish("cancelled")
            try:
                self._stop_remote(entry)
            except JobsUnavailable:
                log.warning("could not tell the workers to stop %s", entry.run.run_id)
            self._forget(entry.run.run_id)
        self.broker.close()

    def _follow(self) -> None:
        while not self._stop.wait(POLL_S):
            with self._lock:
                followed = list(self._followed.values())
            for entry in followed:
                try:
                    self._advance(entry)
                except (JobsUnavailable, *UNREACHABLE):
                    log.warning("segmentation job %s: broker unreachable", entry.run.run_id)

    def _advance(self, entry: _Followed) -> None:
        """Take the run's new events; pass a cancel on; forget the run once it has ended."""
        run = entry.run
        if run.cancel_requested or run.finished:
            self._stop_remote(entry)
        if run.finished:
            self._forget(run.run_id)
            return
        events = self.broker.state.events(run.run_id, entry.events_read)
        entry.events_read += len(events)
        for event in events:
            if not self._take(entry, event):
                self._forget(run.run_id)
                return

    def _take(self, entry: _Followed, event: dict) -> bool:
        """Apply one event to the run; False once the run has ended here."""
        run, kind = entry.run, event["kind"]
        if kind == "started" and run.status().state == "queued" and not run.try_start():
            self._stop_remote(entry)  # cancelled, or taken over by a get-labels
            return False
        if kind == "chunk" and event["chunk"] == entry.chunks_taken:
            try:
                run.add(event["progress"], [Segment(*values) for values in event["segments"]])
            except RunCancelled:
                self._stop_remote(entry)
                run.finish("cancelled")
                return False
            entry.chunks_taken += 1
        elif kind in ("done", "failed", "cancelled"):
            run.finish(kind, event.get("error"))
            return False
        return True

    def _stop_remote(self, entry: _Followed) -> None:
        if not entry.cancel_sent:
            self.broker.cancel(entry.run.run_id, revoke=True)
            entry.cancel_sent = True

    def _forget(self, run_id: str) -> None:
        """Stop following a run; its events go, and its audio when no other run reads it."""
        with self._lock:
            entry = self._followed.pop(run_id, None)
            if entry is None:
                return
            still_read = any(f.audio == entry.audio for f in self._followed.values())
            if not still_read:
                (self.audio_dir / entry.audio).unlink(missing_ok=True)
        try:
            self.broker.state.forget_events(run_id)
        except UNREACHABLE:
            log.warning("could not delete the events of segmentation job %s", run_id)
