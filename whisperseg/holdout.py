"""Hold back part of a person's labels, and learn from the rest what a segment can be.

Labelled clips arrive in the order they were annotated, each naming the recording it
was cut from. Of every recording, the last fraction of its labels is held back (cut in
the gap before them, so no label is split), with the annotated time after them, to
score a finetuned model on labels it never trained on: a job on labels from several
recordings is judged on all of them, not on the last one alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from whisperseg.training import TrainingExample


def slice_example(example: TrainingExample, start: float, end: float) -> TrainingExample:
    """The part of ``example`` from ``start`` to ``end`` seconds, labels clipped to it and
    timed from ``start`` (what a person labelling that area draws)."""
    lo, hi = round(start * example.sr), round(end * example.sr)
    segments = tuple(
        replace(s, onset=max(s.onset, start) - start, offset=min(s.offset, end) - start)
        for s in example.segments
        if s.onset < end and s.offset > start
    )
    return replace(example, audio=example.audio[lo:hi], segments=segments)


def _cut_before_last_labels(examples: Sequence[TrainingExample], fraction: float) -> float:
    """A time (seconds into the clips laid end to end) with the last ``fraction`` of the
    labels after it, in the gap before the first of them.

    Cut by labels, not by time: annotated areas often end in silence (a recording's quiet
    tail), and a held-back part without labels would score every model 1.0.
    """
    labels, start = [], 0.0
    for example in examples:
        labels += sorted((start + s.onset, start + s.offset) for s in example.segments)
        start += example.duration
    held = max(1, round(fraction * len(labels)))
    if held >= len(labels):
        return start * (1.0 - fraction)
    previous_end = max(offset for _, offset in labels[:-held])
    first_onset = labels[-held][0]
    return (previous_end + first_onset) / 2 if first_onset > previous_end else first_onset


def split_examples(
    examples: Sequence[TrainingExample], fraction: float
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """(kept, held back): of each recording (``source``), the last ``fraction`` of its
    labels and its annotated time from the gap before them on are held back. A
    recording with a single label is all kept: holding it back would teach nothing of it."""
    kept: list[TrainingExample] = []
    held: list[TrainingExample] = []
    for source in dict.fromkeys(e.source for e in examples):
        clips = [e for e in examples if e.source == source]
        if sum(len(e.segments) for e in clips) < 2:
            kept += clips
            continue
        part_kept, part_held = _split_recording(clips, fraction)
        kept += part_kept
        held += part_held
    return kept, held


def _split_recording(
    examples: Sequence[TrainingExample], fraction: float
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    cut = _cut_before_last_labels(examples, fraction)
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
            kept.append(slice_example(example, 0.0, cut - start))
            held.append(slice_example(example, cut - start, example.duration))
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
