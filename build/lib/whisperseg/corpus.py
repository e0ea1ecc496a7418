"""Segment a corpus: every recording of a folder, one output each, resumable.

Outputs mirror the corpus folder (``a/b.wav`` -> ``OUT/a/b.csv``) and are written
atomically, so a run stopped at any point leaves only whole outputs, and a resumed run
skips exactly the files that are done. The ``file`` column holds the path relative to
the corpus folder: the same on every machine, and what ``segment`` writes for that path.
Files are segmented here one after the other with one model load, or by any other
``Segmenting`` (Celery workers: ``distributed.corpus``); either way a progress bar with
an ETA runs, and a summary ends the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from whisperseg.durable import write_text_atomic
from whisperseg.export import segment_annotations, to_raven
from whisperseg.files import load_model, rows_text, segment_file, segment_rows, segmentation_config
from whisperseg.model import WhisperSegModel
from whisperseg.segment import Segment

log = logging.getLogger(__name__)

OUTPUT_SUFFIXES = {"csv": ".csv", "json": ".json", "raven": ".selections.txt"}
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")


@dataclass(frozen=True)
class CorpusFile:
    """Everything needed to segment one file and write its output (a task's message)."""

    root: str
    relative: str
    out: str
    model: str
    format: str = "csv"
    species: str | None = None
    overrides: dict = field(default_factory=dict)

    @property
    def source(self) -> Path:
        return Path(self.root) / self.relative

    @property
    def output(self) -> Path:
        return output_path(Path(self.out), self.relative, self.format)

    def to_message(self) -> dict:
        return asdict(self)

    @classmethod
    def from_message(cls, message: dict) -> CorpusFile:
        return cls(**message)


@dataclass(frozen=True)
class FileResult:
    relative: str
    segments: int
    seconds: float


Outcome = tuple[CorpusFile, FileResult | None, str | None]
# Segments a list of files somewhere, yielding (file, result or None, error or None).
Segmenting = Callable[[list[CorpusFile]], Iterator[Outcome]]


def find_audio(root: Path) -> list[str]:
    """Recordings under ``root`` (hidden files and folders left out), as sorted relative paths."""
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        hidden = any(part.startswith(".") for part in relative.parts)
        if path.suffix.lower() in AUDIO_SUFFIXES and not hidden and path.is_file():
            found.append(relative.as_posix())
    return sorted(found)


def output_path(out: Path, relative: str, fmt: str) -> Path:
    return out / (str(Path(relative).with_suffix("")) + OUTPUT_SUFFIXES[fmt])


def render(relative: str, segments: list[Segment], fmt: str) -> str:
    """CSV and JSON as ``segment`` writes them; Raven as the annotation export does."""
    if fmt == "raven":
        return to_raven(segment_annotations(segments))
    return rows_text(segment_rows(relative, segments), fmt)


def segment_corpus_file(model: WhisperSegModel, job: CorpusFile) -> FileResult:
    config = segmentation_config(model, job.species, job.overrides)
    segments, seconds = segment_file(model, job.source, config, job.species)
    write_text_atomic(job.output, render(job.relative, segments, job.format), make_parents=True)
    return FileResult(job.relative, len(segments), seconds)


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


def segment_here(files: list[CorpusFile], device: str | None = None) -> Iterator[Outcome]:
    """Segment in this process, one file at a time."""
    model = load_model(files[0].model, device) if files else None
    for job in files:
        try:
            yield job, segment_corpus_file(model, job), None
        except Exception as exc:
            log.debug("segmenting %s failed", job.relative, exc_info=True)
            yield job, None, f"{type(exc).__name__}: {exc}"


def segment_corpus(
    template: CorpusFile,
    segmenting: Segmenting | None = None,
    show_progress: bool = True,
) -> Summary:
    """Segment every recording under ``template.root`` whose output is missing (here,
    unless ``segmenting`` sends the files elsewhere)."""
    started = time.monotonic()
    todo, skipped = plan(template)
    summary = Summary(skipped=skipped)
    outcomes = (segmenting or segment_here)(todo)
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
