"""A predicted segment's confidence: the calibrated chance that it is right.

Right means: it matches a true call at the scoring tolerance (``whisperseg.metrics``).
The evidence for one segment, measured while segmenting at little extra cost:

- ``vote``: the share of the segmentation trials that found it (DBSCAN consensus);
- ``overlap``: how well the trials agree on where it is (mean over trials of the best
  intersection-over-union of a trial's segment with it, 0 for a trial that missed it);
- ``boundary``: how sure the decoder was of its boundaries (mean over trials of the
  probability it gave the onset and offset tokens' neighbourhood, multiplied; 0 for a
  trial that missed it) -- left out where the decoder cannot measure it;
- ``snr``: its band energy above the recording's quiet parts (dB / 10);
- ``duration``: how far its length is from the median of the recording's segments
  (absolute log2 ratio).

A small logistic model turns them into a probability. Its coefficients are fitted once
by ``bench/confidence.py`` on held-out human labels (never on what the model trained
on) and shipped in ``confidence.json`` next to this file; a model folder's own
``confidence.json`` (same layout) overrides it, and a model saves its own where they
differ from the shipped ones (a finetuned copy keeps its base's). The energy
baseline's segments get the same treatment with ``snr`` and ``duration`` only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np

from whisperseg.energy import EnergyParams, band_energy_db
from whisperseg.segment import Segment

CALIBRATION_FILE = "confidence.json"
DEFAULT_CALIBRATION = Path(__file__).resolve().parent / CALIBRATION_FILE
# Names of the calibrations in a confidence.json.
SCORED, UNSCORED, ENERGY = "whisperseg", "whisperseg-unscored", "energy"
FEATURES = {
    SCORED: ("vote", "overlap", "boundary", "snr", "duration"),
    UNSCORED: ("vote", "overlap", "snr", "duration"),
    ENERGY: ("snr", "duration"),
}
QUIET_PERCENTILE = 20.0  # the recording's quiet parts: this percentile of its band level


@dataclass(frozen=True)
class Calibration:
    """A logistic model over named features: p = sigmoid(intercept + coef . (x - mean) / scale)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    @classmethod
    def from_dict(cls, values: Mapping) -> Calibration:
        return cls(
            tuple(values["features"]),
            tuple(map(float, values["mean"])),
            tuple(map(float, values["scale"])),
            tuple(map(float, values["coef"])),
            float(values["intercept"]),
        )

    def to_dict(self) -> dict:
        return {
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "intercept": self.intercept,
        }

    def probability(self, evidence: Mapping[str, np.ndarray]) -> np.ndarray:
        x = np.stack([np.asarray(evidence[name], dtype=np.float64) for name in self.features], 1)
        z = self.intercept + ((x - self.mean) / self.scale) @ np.asarray(self.coef)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def load_calibrations(path: Path | str) -> dict[str, Calibration]:
    """The calibrations of a confidence.json, by name."""
    data = json.loads(Path(path).read_text())
    return {name: Calibration.from_dict(values) for name, values in data["calibrations"].items()}


def save_calibrations(
    path: Path | str, calibrations: Mapping[str, Calibration], about: str
) -> None:
    """Write ``calibrations`` in the layout :func:`load_calibrations` reads."""
    payload = {
        "about": about,
        "calibrations": {name: c.to_dict() for name, c in calibrations.items()},
    }
    Path(path).write_text(json.dumps(payload, indent=1) + "\n")


@cache
def default_calibrations() -> dict[str, Calibration]:
    return load_calibrations(DEFAULT_CALIBRATION)


def calibrations_for(folder: Path | str | None) -> dict[str, Calibration]:
    """A model folder's own calibrations over the shipped ones (where it has a file)."""
    calibrations = dict(default_calibrations())
    own = Path(folder) / CALIBRATION_FILE if folder is not None else None
    if own is not None and own.is_file():
        calibrations.update(load_calibrations(own))
    return calibrations


def _band_level(
    segments: Sequence[Segment], audio: np.ndarray, sr: int, min_frequency: float | None
) -> np.ndarray:
    """Each segment's mean band level above the recording's quiet parts, in dB / 10."""
    if not len(segments) or not len(audio):
        return np.zeros(len(segments))
    db, step = band_energy_db(audio, sr, EnergyParams.with_floor(min_frequency))
    quiet = np.percentile(db, QUIET_PERCENTILE)
    cumulative = np.r_[0.0, np.cumsum(db - quiet)]
    start = np.clip(np.array([round(s.onset / step) for s in segments]), 0, len(db) - 1)
    end = np.clip(np.array([round(s.offset / step) for s in segments]), start + 1, len(db))
    return np.clip((cumulative[end] - cumulative[start]) / (end - start) / 10.0, -2.0, 8.0)


def _duration_distance(segments: Sequence[Segment]) -> np.ndarray:
    durations = np.array([max(s.duration, 1e-4) for s in segments])
    if not len(durations):
        return durations
    return np.minimum(np.abs(np.log2(durations / np.median(durations))), 5.0)


def _trial_agreement(
    segments: Sequence[Segment], trials: Sequence[Sequence[Segment]]
) -> tuple[np.ndarray, np.ndarray]:
    """(overlap, boundary): per segment, the means over trials of the best IoU of a
    trial's segment with it and that segment's boundary score (0 for a trial without)."""
    overlap = np.zeros(len(segments))
    boundary = np.zeros(len(segments))
    for trial in trials:
        ordered = sorted(trial, key=lambda s: s.onset)
        onsets = np.array([s.onset for s in ordered])
        longest = max((s.duration for s in ordered), default=0.0)
        for i, s in enumerate(segments):
            first = int(np.searchsorted(onsets, s.onset - longest, "left"))
            last = int(np.searchsorted(onsets, s.offset, "left"))
            best, score = 0.0, 0.0
            for other in ordered[first:last]:
                inter = min(s.offset, other.offset) - max(s.onset, other.onset)
                if inter > 0:
                    iou = inter / (max(s.offset, other.offset) - min(s.onset, other.onset))
                    if iou > best:
                        best, score = iou, other.confidence
            overlap[i] += best
            boundary[i] += score
    count = max(1, len(trials))
    return overlap / count, boundary / count


def whisperseg_evidence(
    segments: Sequence[Segment],
    trials: Sequence[Sequence[Segment]],
    audio: np.ndarray,
    sr: int,
    min_frequency: float | None,
) -> dict[str, np.ndarray]:
    """The evidence of the final ``segments`` (confidence: their trial vote) from the
    ``trials``' segments (confidence: their boundary score) and the audio at ``sr``."""
    overlap, boundary = _trial_agreement(segments, trials)
    return {
        "vote": np.array([s.confidence for s in segments], dtype=np.float64),
        "overlap": overlap,
        "boundary": boundary,
        "snr": _band_level(segments, audio, sr, min_frequency),
        "duration": _duration_distance(segments),
    }


def energy_evidence(
    segments: Sequence[Segment], audio: np.ndarray, sr: int, min_frequency: float | None
) -> dict[str, np.ndarray]:
    return {
        "snr": _band_level(segments, audio, sr, min_frequency),
        "duration": _duration_distance(segments),
    }


def with_confidence(
    segments: Sequence[Segment], evidence: Mapping[str, np.ndarray], calibration: Calibration
) -> list[Segment]:
    """The segments with their calibrated confidence (rounded to 4 decimals)."""
    if not len(segments):
        return []
    p = np.round(calibration.probability(evidence), 4)
    return [replace(s, confidence=float(c)) for s, c in zip(segments, p, strict=True)]
