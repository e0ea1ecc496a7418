"""Run a corpus: plan what is left, segment it here or on workers, report as it goes.

Without a broker the files are segmented one after the other in this process, with one
model load. With one, each file is a Celery task (``distributed.tasks``): workers write
the outputs and the results (segments, seconds) come back through Redis. Either way a
progress bar with an ETA runs, and a summary ends the run.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from corpus.files import CorpusFile, FileResult, find_audio, segment_corpus_file

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """What a run did; ``failed`` holds (file, error)."""

    segmented: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    segments: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0

    def add(self, result: FileResult) -> None:
        self.segmented += 1
        self.segments += result.segments
        self.audio_s += result.seconds

    def text(self) -> str:
        speed = f", {self.audio_s / self.wall_s:.1f} s of audio per second" if self.wall_s else ""
        lines = [
            f"{self.segmented} files segmented ({self.audio_s:.1f} s of audio, "
            f"{self.segments} segments) in {self.wall_s:.1f} s{speed}; "
            f"{self.skipped} skipped (output present); {len(self.failed)} failed"
        ]
        lines += [f"  failed: {name}: {error}" for name, error in self.failed]
        return "\n".join(lines)


def plan(template: CorpusFile) -> tuple[list[CorpusFile], int]:
    """(files whose output is missing, number of files already done)."""
    root = Path(template.root)
    files = [CorpusFile(**{**template.to_message(), "relative": r}) for r in find_audio(root)]
    outputs = [f.output for f in files]
    if len(set(outputs)) < len(outputs):
        raise ValueError("two recordings differ only by extension: their outputs would collide")
    todo = [f for f in files if not f.output.exists()]
    return todo, len(files) - len(todo)


Outcome = tuple[CorpusFile, FileResult | None, str | None]


def segment_here(files: list[CorpusFile], device: str | None) -> Iterator[Outcome]:
    """Segment in this process, one file at a time."""
    from whisperseg.files import load_model

    model = load_model(files[0].model, device) if files else None
    for job in files:
        try:
            yield job, segment_corpus_file(model, job), None
        except Exception as exc:
            log.debug("segmenting %s failed", job.relative, exc_info=True)
            yield job, None, f"{type(exc).__name__}: {exc}"


def segment_on_workers(files: list[CorpusFile], broker_url: str) -> Iterator[Outcome]:
    """Send one task per file, then collect the results in the order sent."""
    from distributed.app import SEGMENT_FILE_TASK
    from distributed.broker import Broker

    broker = Broker(broker_url)
    try:
        if not broker.reachable(broker.state.live_queues):
            log.warning("no worker is running: the files wait in the queue for one")
        queue = broker.queue_for(wants_gpu=True)
        sent = []
        for job in files:
            task_id = f"corpus-{uuid.uuid4().hex}"
            result = broker.send(SEGMENT_FILE_TASK, job.to_message(), queue, task_id, True)
            sent.append((job, result))
        for job, result in sent:
            value = result.get(propagate=False)
            if result.successful():
                yield job, FileResult(**value), None
            else:
                yield job, None, f"{type(value).__name__}: {value}"
            result.forget()
    finally:
        broker.close()


def segment_corpus(
    template: CorpusFile,
    broker_url: str | None = None,
    device: str | None = None,
    show_progress: bool = True,
) -> Summary:
    """Segment every recording under ``template.root`` whose output is missing."""
    started = time.monotonic()
    todo, skipped = plan(template)
    summary = Summary(skipped=skipped)
    outcomes = segment_on_workers(todo, broker_url) if broker_url else segment_here(todo, device)
    with tqdm(total=len(todo), unit="file", desc="segmenting", disable=not show_progress) as bar:
        for job, result, error in outcomes:
            if result is None:
                summary.failed.append((job.relative, error or "unknown error"))
            else:
                summary.add(result)
            bar.update(1)
            bar.set_postfix(audio_s=f"{summary.audio_s:.0f}", failed=len(summary.failed))
    summary.wall_s = time.monotonic() - started
    return summary
