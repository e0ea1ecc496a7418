"""Consensus of segmentation trials."""

from __future__ import annotations

import pytest

from whisperseg.consensus import consensus
from whisperseg.segment import Segment

EPS = 0.02
BASE = [Segment(0.10, 0.20, "a"), Segment(0.23, 0.30, "a"), Segment(0.50, 0.80, "b")]


def _shifted(segments: list[Segment], shift: float) -> list[Segment]:
    return [Segment(s.onset + shift, s.offset + shift, s.cluster) for s in segments]


def test_shifted_copies_merge_to_their_mean() -> None:
    trials = [_shifted(BASE, shift) for shift in (-0.004, 0.0, 0.004)]
    merged = consensus(trials, EPS)
    assert len(merged) == len(BASE)
    for got, want in zip(merged, BASE, strict=True):
        assert got.onset == pytest.approx(want.onset)
        assert got.offset == pytest.approx(want.offset)
        assert got.cluster == want.cluster
        assert got.confidence == 1.0


def test_segment_found_by_one_trial_of_three_is_dropped() -> None:
    lonely = Segment(1.0, 1.1, "a")
    merged = consensus([[*BASE, lonely], BASE, BASE], EPS)
    assert [s.cluster for s in merged] == [s.cluster for s in BASE]
    assert [t for s in merged for t in (s.onset, s.offset)] == pytest.approx(
        [t for s in BASE for t in (s.onset, s.offset)]
    )


def test_segment_found_by_two_of_three_trials_has_confidence_two_thirds() -> None:
    extra = Segment(1.0, 1.1, "a")
    merged = consensus([[*BASE, extra], [*BASE, extra], BASE], EPS)
    assert merged[-1].onset == pytest.approx(1.0)
    assert merged[-1].confidence == pytest.approx(2 / 3)


def test_majority_label_wins() -> None:
    trials = [[Segment(0.1, 0.2, "b")], [Segment(0.1, 0.2, "a")], [Segment(0.1, 0.2, "b")]]
    assert [s.cluster for s in consensus(trials, EPS)] == ["b"]


def test_single_trial_passes_through_sorted() -> None:
    segments = [Segment(0.5, 0.6, "a"), Segment(0.1, 0.2, "b")]
    assert consensus([segments], EPS) == sorted(segments, key=lambda s: s.onset)


def test_no_segments() -> None:
    assert consensus([], EPS) == []
    assert consensus([[], [], []], EPS) == []


def test_thousands_of_segments_agree_one_to_one() -> None:
    n = 5000
    base = [Segment(0.05 * i, 0.05 * i + 0.03, "a") for i in range(n)]
    trials = [_shifted(base, shift) for shift in (-0.002, 0.0, 0.002)]
    merged = consensus(trials, EPS)
    assert len(merged) == n
    assert all(s.confidence == 1.0 for s in merged)
