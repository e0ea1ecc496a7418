"""bench/self_training.py: pseudo-labelled clips hold only confident segments, whole."""

from __future__ import annotations

import numpy as np

from bench.self_training import confident_clips
from whisperseg.segment import Segment

SR = 1000


def test_a_doubtful_segment_ends_a_clip_in_the_gaps_around_it() -> None:
    audio = np.arange(10 * SR, dtype=np.float32)
    segments = [
        Segment(1.0, 2.0, "call", 0.95),
        Segment(3.0, 4.0, "call", 0.9),
        Segment(5.0, 6.0, "call", 0.3),  # doubtful: no clip may hold its stretch
        Segment(7.0, 8.0, "call", 0.99),
    ]
    clips = confident_clips(audio, SR, segments, 0.8, 10.0, source="r (unlabelled)")

    assert [(c.audio[0] / SR, len(c.audio) / SR) for c in clips] == [(0.0, 4.5), (6.5, 3.5)]
    assert [[(s.onset, s.offset) for s in c.segments] for c in clips] == [
        [(1.0, 2.0), (3.0, 4.0)],
        [(0.5, 1.5)],
    ]
    assert all(c.source == "r (unlabelled)" and c.sr == SR for c in clips)


def test_long_confident_stretches_are_cut_between_calls() -> None:
    audio = np.zeros(10 * SR, dtype=np.float32)
    segments = [Segment(float(t), t + 0.5, "call", 1.0) for t in range(10)]
    clips = confident_clips(audio, SR, segments, 0.5, 3.0)

    assert all(c.duration <= 3.0 for c in clips)
    assert sum(len(c.segments) for c in clips) == 10
    assert all(0.0 <= s.onset < s.offset <= c.duration for c in clips for s in c.segments)
