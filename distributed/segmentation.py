"""Segmentation jobs computed by Celery workers, followed into the server's runs.

``put`` shares the channel's audio, sends the task (JobsUnavailable when the broker is
down, and the run is forgotten) and follows the run: a thread reads the events the
worker appends (``state``), feeds each chunk to the run as the embedded thread would,
and passes a cancel on to the worker. So kept predictions, waiting get-labels and
partial labels behave as in the embedded mode. A worker lost mid-run leaves its task
to another, which resumes after the chunks already reported; repeated chunks are ignored.

Each run is registered in Redis with what it segments (``distributed.lease``), and its
events stay there for a day after it ends, so a server that restarts (even killed) takes
up every run from them: running ones are followed again and finish, ended ones report
their labels, under the same job id.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from audio_store import AudioStore
from distributed import shared_audio
from distributed.app import SEGMENT_RUN_TASK
from distributed.broker import UNREACHABLE, Broker
from distributed.lease import SEGMENT, jobs_of_kind, waiting_note
from inference.runs import RunCancelled, RunKey, RunStore, SegmentationRun
from jobs.record import JobsUnavailable
from model_registry import ENERGY_MODEL
from whisperseg.segment import Segment

log = logging.getLogger(__name__)
POLL_S = 0.2
KEEP_ENDED_S = 24 * 3600  # an ended run's events, for a server that restarts meanwhile


@dataclass
class _Followed:
    run: SegmentationRun
    audio: str  # the shared file its worker reads
    queue: str | None = None  # the queue it was sent to
    events_read: int = 0
    chunks_taken: int = 0
    cancel_sent: bool = False


class CeleryRunQueue:
    """Sends each run to the workers and mirrors its progress (a ``RunQueue``)."""

    def __init__(
        self, broker: Broker, audio: AudioStore, audio_dir: Path, runs: RunStore | None = None
    ):
        """``runs``: the service's run store, given so that the runs of a previous server
        process are taken up into it."""
        self.broker, self.audio, self.audio_dir = broker, audio, audio_dir
        self._lock = threading.Lock()
        self._followed: dict[str, _Followed] = {}
        self._stop = threading.Event()
        if runs is not None:
            try:
                self._restore(runs)
            except (JobsUnavailable, *UNREACHABLE):
                log.warning("broker unreachable: earlier segmentation jobs not taken up")
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
        meta = {
            "audio_id": key.audio_id,
            "model_name": key.model_name,
            "model_identity": list(key.model_identity),
            "min_frequency": key.min_frequency,
            "audio": name,
        }
        try:
            shared_audio.write(self.audio_dir, name, channel.samples, channel.sample_rate)
            wants_gpu = key.model_name != ENERGY_MODEL
            queue = self.broker.submit_job(
                run.run_id, SEGMENT, SEGMENT_RUN_TASK, message, wants_gpu, run.run_id, meta
            )
        except BaseException:
            self._forget(run.run_id)
            raise
        with self._lock:
            followed = self._followed.get(run.run_id)
            if followed is not None:
                followed.queue = queue

    def waiting(self, run_id: str) -> str | None:
        """ "waiting for a worker: ..." while no live worker serves the run's queue."""
        with self._lock:
            followed = self._followed.get(run_id)
        if followed is None or followed.queue is None:
            return None
        return waiting_note(followed.queue, self.broker.state.live_queues)

    def _restore(self, runs: RunStore) -> None:
        """Take up the runs a previous server process sent, from their events."""
        for run_id, info in jobs_of_kind(self.broker.state.client, SEGMENT):
            meta = json.loads(info.get("meta") or "{}")
            if not meta or runs.known(run_id):
                continue
            identity = tuple(meta["model_identity"])
            key = RunKey(meta["audio_id"], meta["model_name"], identity, meta["min_frequency"])
            run = SegmentationRun(key)
            run.run_id = run_id
            entry = _Followed(run, meta["audio"], queue=info.get("queue"))
            events = self.broker.state.events(run_id)
            if not events and info.get("ended") == "1":
                continue  # its events have expired
            entry.events_read = len(events)
            ended = False
            for event in events:
                if not self._take(entry, event):
                    ended = True
                    break
            if not ended and run.cancel_requested:
                ended = True
            runs.adopt(run)
            if not ended:
                with self._lock:
                    self._followed[run_id] = entry
            log.info("segmentation job %s taken up (%s)", run_id, run.status().state)

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
            self.broker.state.keep_events(run_id, KEEP_ENDED_S)
        except UNREACHABLE:
            log.warning("could not expire the events of segmentation job %s", run_id)
