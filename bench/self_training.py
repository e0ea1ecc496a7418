"""Self-training for bench/corpus_story.py --self-train: a model's confident segments in
unlabelled audio as extra training clips (measured, not in the job: README).

A training clip says "these are all the calls here", so a clip may only hold stretches in
which every predicted segment is confident: a doubtful segment ends the clip at the
middle of the gap before it, and the next clip starts at the middle of the gap after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from whisperseg.holdout import slice_example
from whisperseg.segment import Segment
from whisperseg.training import TrainingExample


def confident_clips(
    audio: np.ndarray,
    sr: int,
    segments: Sequence[Segment],
    threshold: float,
    max_seconds: float,
    *,
    min_frequency: float = 0.0,
    source: str = "",
) -> list[TrainingExample]:
    """Clips of ``audio`` (at most ``max_seconds`` unless one segment is longer) whose
    segments all have confidence >= ``threshold``, cut in the middle of gaps; each holds at
    least one segment."""
    ordered = sorted(segments, key=lambda s: s.onset)
    whole = TrainingExample(audio, sr, (), 0.0, min_frequency, source=source)
    cuts = [0.0]
    cuts += [(a.offset + b.onset) / 2 for a, b in zip(ordered, ordered[1:], strict=False)]
    cuts.append(whole.duration)
    clips: list[TrainingExample] = []
    run: list[int] = []  # indices of the confident segments in the clip being built

    def close() -> None:
        if run:
            labelled = replace(whole, segments=tuple(ordered[i] for i in run))
            clips.append(slice_example(labelled, cuts[run[0]], cuts[run[-1] + 1]))
            run.clear()

    for index, segment in enumerate(ordered):
        if segment.confidence < threshold:
            close()
            continue
        if run and cuts[index + 1] - cuts[run[0]] > max_seconds:
            close()
        run.append(index)
    close()
    return clips
