"""Annotated recordings in the shared-data layout, and the project's fixed held-out split.

Each ``NAME.wav`` has a ``NAME.json`` with ``onset``/``offset``/``cluster``
lists (seconds) and the segmentation config of its species. The held-out
files are fixed here, in one place, so that training never sees them and
every benchmark and model card reports on the same files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import soundfile as sf

from whisperseg.segment import Segment

# A copy of the recordings elsewhere (a machine without ../shared), e.g. bench/gpu_check.py's pack.
SHARED_DATA_VARIABLE = "WHISPERSEG_SHARED_DATA"
# Held-out group name -> substring of the file name that selects it.
HELD_OUT: MappingProxyType[str, str] = MappingProxyType(
    {
        "adults_g4p5U": "zebra_finch_g4p5U-",
        "juveniles_R3625": "zebra_finch_R3625_",
        "canary_llb16_1612": "llb16_1612_2018_05_10_12_13_41",
        "bengalese_bird0_100-134": "bengalese_finch_bird0_1",
        "mouse_rec8": "mouse_usv_amvoc_rec8",
    }
)


@dataclass(frozen=True)
class AnnotatedRecording:
    """One recording with its human labels and its species' segmentation config.

    ``sr`` is the rate of the wav file itself, which is what ``audio`` is
    sampled at; ``species_sr`` (the json's ``sr``, the rate the species' model
    works at) may differ: the canary files are 44.1 kHz, their species rate 32 kHz.
    """

    path: Path
    audio: np.ndarray
    sr: int
    species_sr: int
    segments: tuple[Segment, ...]
    species: str
    min_frequency: float
    spec_time_step: float
    min_segment_length: float
    tolerance: float
    time_per_frame_for_scoring: float
    eps: float

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sr


def load_recording(wav_path: str | Path) -> AnnotatedRecording:
    """Read ``wav_path`` (mixed down to float32 mono) and its sibling json."""
    path = Path(wav_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    segments = sorted(
        (
            Segment(float(on), float(off), str(cluster))
            for on, off, cluster in zip(meta["onset"], meta["offset"], meta["cluster"], strict=True)
        ),
        key=lambda s: (s.onset, s.offset),
    )
    return AnnotatedRecording(
        path=path,
        audio=audio.mean(axis=1),
        sr=int(sr),
        species_sr=int(meta.get("sr") or sr),
        segments=tuple(segments),
        species=str(meta["species"]),
        min_frequency=float(meta["min_frequency"]),
        spec_time_step=float(meta["spec_time_step"]),
        min_segment_length=float(meta["min_segment_length"]),
        tolerance=float(meta["tolerance"]),
        time_per_frame_for_scoring=float(meta["time_per_frame_for_scoring"]),
        eps=float(meta["eps"]),
    )


def find_recordings(folder: str | Path) -> list[Path]:
    """All annotated wav files under ``folder`` (recursively), sorted by path."""
    return sorted(p for p in Path(folder).rglob("*.wav") if p.with_suffix(".json").is_file())


def held_out_group(path: str | Path) -> str | None:
    """Name of the held-out group ``path`` belongs to, or None for training files."""
    name = Path(path).name
    return next((group for group, key in HELD_OUT.items() if key in name), None)


def split_recordings(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """Split ``paths`` into (train, held_out), each in the given order."""
    train: list[Path] = []
    held_out: list[Path] = []
    for p in map(Path, paths):
        (train if held_out_group(p) is None else held_out).append(p)
    return train, held_out


def shared_data_dir() -> Path | None:
    """``../shared/data`` next to the repository root (``$WHISPERSEG_SHARED_DATA`` when
    set), or None where it is absent."""
    override = os.environ.get(SHARED_DATA_VARIABLE)
    folder = Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"
    return folder if folder.is_dir() else None
