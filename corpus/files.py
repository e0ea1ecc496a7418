"""One corpus file: where its output goes, how it is written, the task a worker gets.

Outputs mirror the corpus folder (``a/b.wav`` -> ``OUT/a/b.csv``) and are written
atomically, so a run stopped at any point leaves only whole outputs, and a resumed run
skips exactly the files that are done. The ``file`` column holds the path relative to
the corpus folder: the same on every machine, and what ``segment`` writes for that path.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from annotations.export import to_raven
from whisperseg.files import rows_text, segment_file, segment_rows, segmentation_config
from whisperseg.model import WhisperSegModel
from whisperseg.segment import Segment

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
        return to_raven(
            [{"onset": s.onset, "offset": s.offset, "clustername": s.cluster} for s in segments]
        )
    return rows_text(segment_rows(relative, segments), fmt)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def segment_corpus_file(model: WhisperSegModel, job: CorpusFile) -> FileResult:
    config = segmentation_config(model, job.species, job.overrides)
    segments, seconds = segment_file(model, job.source, config, job.species)
    write_atomic(job.output, render(job.relative, segments, job.format))
    return FileResult(job.relative, len(segments), seconds)
