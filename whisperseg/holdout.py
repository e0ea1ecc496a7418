"""Hold back part of a person's labels, and learn from the rest what a segment can be.

Labelled clips arrive in the order they were annotated. The last fraction of the
annotated time is held back (cut in a silent gap, so no label is split) to score
a finetuned model on labels it never trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from whisperseg.segment import Segment
from whisperseg.training import TrainingExample


def _slice(example: TrainingExample, start: float, end: float) -> TrainingExample:
    """The part of ``example`` from ``start`` to ``end`` seconds, labels clipped to it."""
    lo, hi = round(start * example.sr), round(end * example.sr)
    segments = tuple(
        replace(s, onset=max(s.onset, start) - start, offset=min(s.offset, end) - start)
        for s in example.segments
        if s.onset < end and s.offset > start
    )
    return replace(example, audio=example.audio[lo:hi], segments=segments)


def _quiet_cut(segments: Sequence[Segment], at: float, duration: float) -> float:
    """The time nearest ``at`` that lies outside every label (``at`` itself if inside none)."""
    candidates = [at]
    for s in segments:
        if s.onset < at < s.offset:
            candidates = [s.onset, s.offset]
            break
    inside = [t for t in candidates if 0 < t < duration]
    return min(inside or [at], key=lambda t: abs(t - at))


def split_examples(
    examples: Sequence[TrainingExample], fraction: float
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """(kept, held back): the last ``fraction`` of the annotated time is held back."""
    total = sum(e.duration for e in examples)
    cut = total * (1.0 - fraction)
    kept: list[TrainingExample] = []
    held: list[TrainingExample] = []
    start = 0.0
    for example in examples:
        end = start + example.duration
        if end <= cut:
            kept.append(example)
        elif start >= cut:
            held.append(example)
        else:
            at = _quiet_cut(example.segments, cut - start, example.duration)
            kept.append(_slice(example, 0.0, at))
            held.append(_slice(example, at, example.duration))
        start = end
    return [e for e in kept if e.duration > 0], [e for e in held if e.duration > 0]


@dataclass(frozen=True, slots=True)
class LabelStats:
    """What the labels say about segments: median length, shortest segment and gap."""

    median_duration: float
    min_duration: float
    min_gap: float
    clusters: tuple[str, ...]


def label_stats(examples: Sequence[TrainingExample]) -> LabelStats:
    """Statistics of whole labels: those cut by a clip's edge are left out of the lengths."""
    durations: list[float] = []
    gaps: list[float] = []
    clusters: set[str] = set()
    for e in examples:
        ordered = sorted(e.segments, key=lambda s: s.onset)
        clusters.update(s.cluster for s in ordered)
        durations += [s.duration for s in ordered if s.onset > 0 and s.offset < e.duration]
        gaps += [b.onset - a.offset for a, b in zip(ordered, ordered[1:], strict=False)]
    durations = durations or [s.duration for e in examples for s in e.segments]
    if not durations:
        raise ValueError("no labelled segments")
    positive_gaps = [g for g in gaps if g > 0]
    return LabelStats(
        median_duration=float(np.median(durations)),
        min_duration=float(min(durations)),
        min_gap=float(min(positive_gaps)) if positive_gaps else 0.0,
        clusters=tuple(sorted(clusters)),
    )
