"""Human-in-the-loop labels: the /get-labels merge rule and /finetune-whisperseg training clips.

The frontend labels a segment with species, individual and cluster name; the model
knows one cluster string. Finetuning joins the three (``whisperseg.segment.join_cluster``) so a
finetuned model predicts all three, and predictions are split back the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from whisperseg.export import has_value
from whisperseg.segment import UNKNOWN, Segment, join_cluster, split_cluster
from whisperseg.segmentation import time_step_from_labels
from whisperseg.training import TrainingExample

Area = tuple[float, float]


class NoTrainingData(ValueError):
    """No annotated area with valid bounds holds a human label."""

    def __init__(self) -> None:
        super().__init__("No valid training data specified. Re-check the annotated areas.")


def label_name(value: object) -> str:
    """A species, individual or cluster name; "no value" becomes :data:`UNKNOWN`."""
    return str(value) if has_value(value) else UNKNOWN


@dataclass(frozen=True, slots=True)
class Label:
    """A segment as the frontend shows it: seconds from the recording start and three names.

    ``confidence`` is the predicted chance (0-1) that a model's segment is right; a
    person's label has 1.0.
    """

    onset: float
    offset: float
    species: str = UNKNOWN
    individual: str = UNKNOWN
    clustername: str = UNKNOWN
    confidence: float = 1.0

    @classmethod
    def from_segment(cls, segment: Segment) -> Label:
        names = split_cluster(segment.cluster)
        return cls(segment.onset, segment.offset, *names, confidence=segment.confidence)

    @property
    def cluster(self) -> str:
        return join_cluster(self.species, self.individual, self.clustername)


def _overlaps(onset: float, offset: float, area: Area) -> bool:
    """Open intervals: a label that only touches an area's edge is outside it."""
    return onset < area[1] and offset > area[0]


def _in_any(onset: float, offset: float, areas: Sequence[Area]) -> bool:
    return any(_overlaps(onset, offset, area) for area in areas)


def merge_labels(
    predictions: Sequence[Segment], human_labels: Sequence[Label], annotated_areas: Sequence[Area]
) -> list[Label]:
    """API.md's merge rule: inside annotated areas the human wins, elsewhere the model.

    Human labels overlapping an area are kept, predictions overlapping one are
    dropped, the other predictions are kept; the result is sorted by onset. Empty or
    reversed areas cover nothing.
    """
    areas = [(on, off) for on, off in annotated_areas if off > on]
    kept = [label for label in human_labels if _in_any(label.onset, label.offset, areas)]
    kept += [Label.from_segment(s) for s in predictions if not _in_any(s.onset, s.offset, areas)]
    return sorted(kept, key=lambda label: (label.onset, label.offset))


def _valid_area(area: Area, duration: float) -> Area | None:
    """The part of an area inside the audio, or None when its bounds make no sense."""
    if not all(math.isfinite(bound) for bound in area):
        return None
    onset, offset = max(0.0, area[0]), min(duration, area[1])
    return (onset, offset) if offset > onset else None


def _clipped_segments(area: Area, human_labels: Sequence[Label]) -> tuple[Segment, ...]:
    """Labels overlapping ``area``, clipped to it, in seconds from its start."""
    onset, offset = area
    return tuple(
        Segment(max(label.onset, onset) - onset, min(label.offset, offset) - onset, label.cluster)
        for label in human_labels
        if label.offset > label.onset and _overlaps(label.onset, label.offset, area)
    )


@dataclass(frozen=True)
class LabelledRecording:
    """One channel's samples with the areas a person annotated and the labels drawn in them."""

    audio: np.ndarray
    sr: int
    areas: Sequence[Area]
    labels: Sequence[Label]
    source: str = ""  # which recording (the audio id): a job holds labels back from each

    def clips(self) -> list[tuple[np.ndarray, tuple[Segment, ...]]]:
        """(samples, labels relative to the area) of every valid annotated area."""
        duration = len(self.audio) / self.sr
        clips = []
        for area in self.areas:
            valid = _valid_area(area, duration)
            if valid is None:
                continue
            start, end = round(valid[0] * self.sr), round(valid[1] * self.sr)
            if end > start:
                samples = np.asarray(self.audio[start:end], dtype=np.float32).copy()
                clips.append((samples, _clipped_segments(valid, self.labels)))
        return clips


def training_clips(
    recordings: Sequence[LabelledRecording],
    spec_time_step: float | None = None,
    min_frequency: float = 0.0,
) -> list[TrainingExample]:
    """One training example per valid annotated area of every recording, labels relative to it.

    An area without labels is kept: it teaches the model that nothing is there.
    ``spec_time_step`` defaults to the one derived from all clipped labels' durations.
    Raises :class:`NoTrainingData` when no valid area holds a label.
    """
    clips = [(clip, r) for r in recordings for clip in r.clips()]
    durations = [s.duration for (_, segments), _ in clips for s in segments]
    if not durations:
        raise NoTrainingData()
    step = spec_time_step or time_step_from_labels(durations)
    return [
        TrainingExample(samples, r.sr, segments, step, min_frequency, source=r.source)
        for (samples, segments), r in clips
    ]
