"""Scoring on cases small enough to count by hand."""

from __future__ import annotations

import pytest

from whisperseg.metrics import Counts, evaluate_files, frame_counts, segment_counts
from whisperseg.segment import Segment

TOL = 0.01


def test_exact_match_is_all_hits() -> None:
    truth = [Segment(0.1, 0.2, "a"), Segment(0.5, 0.7, "a")]
    counts = segment_counts(list(truth), truth, TOL)
    assert counts == Counts(tp=2, fp=0, fn=0)
    assert counts.f1 == 1.0


def test_boundary_just_beyond_tolerance_misses() -> None:
    truth = [Segment(0.10, 0.20, "a")]
    assert segment_counts([Segment(0.115, 0.20, "a")], truth, TOL) == Counts(0, 1, 1)
    assert segment_counts([Segment(0.10, 0.215, "a")], truth, TOL) == Counts(0, 1, 1)


def test_boundary_exactly_at_tolerance_hits_despite_float_rounding() -> None:
    # 0.51 - 0.50 is 0.010000000000000009 in binary floating point.
    assert segment_counts([Segment(0.51, 0.61, "a")], [Segment(0.50, 0.60, "a")], TOL).tp == 1


def test_cluster_mismatch_misses_unless_clusters_are_ignored() -> None:
    pred, truth = [Segment(0.1, 0.2, "b")], [Segment(0.1, 0.2, "a")]
    assert segment_counts(pred, truth, TOL) == Counts(0, 1, 1)
    assert segment_counts(pred, truth, TOL, match_cluster=False) == Counts(1, 0, 0)


def test_matching_is_one_to_one() -> None:
    truth = [Segment(0.100, 0.200, "a")]
    pred = [Segment(0.102, 0.200, "a"), Segment(0.105, 0.201, "a")]
    assert segment_counts(pred, truth, TOL) == Counts(tp=1, fp=1, fn=0)


def test_greedy_matching_takes_closest_pairs_first() -> None:
    # Each prediction lies within tolerance of both truths; the closest pairs win.
    truth = [Segment(0.100, 0.200, "a"), Segment(0.106, 0.206, "a")]
    pred = [Segment(0.105, 0.205, "a"), Segment(0.099, 0.199, "a")]
    assert segment_counts(pred, truth, TOL) == Counts(tp=2, fp=0, fn=0)


def test_frame_counts_by_hand() -> None:
    # Truth covers bins 0-9, prediction bins 5-14 (1 ms bins): 5 shared, 5 extra, 5 missed.
    truth = [Segment(0.000, 0.010, "a")]
    pred = [Segment(0.005, 0.015, "a")]
    counts = frame_counts(pred, truth, time_per_frame=0.001)
    assert counts == Counts(tp=5, fp=5, fn=5)
    assert counts.f1 == pytest.approx(0.5)


def test_frame_with_wrong_cluster_is_false_positive_and_false_negative() -> None:
    truth = [Segment(0.000, 0.010, "a")]
    pred = [Segment(0.000, 0.010, "b")]
    assert frame_counts(pred, truth) == Counts(tp=0, fp=10, fn=10)
    assert frame_counts(pred, truth, match_cluster=False) == Counts(tp=10, fp=0, fn=0)


def test_frame_counts_with_two_clusters_and_gap() -> None:
    truth = [Segment(0.000, 0.004, "a"), Segment(0.006, 0.010, "b")]
    pred = [Segment(0.000, 0.010, "a")]
    # Bins 0-3 hit; 4-5 predicted but unlabelled; 6-9 labelled b, predicted a.
    assert frame_counts(pred, truth) == Counts(tp=4, fp=6, fn=4)


def test_overlapping_clusters_label_bins_deterministically() -> None:
    # Bins 0-4 are "a"; in the overlap (5-9) the alphabetically last cluster, "b", wins.
    truth = [Segment(0.000, 0.010, "a"), Segment(0.005, 0.015, "b")]
    pred = [Segment(0.000, 0.005, "a"), Segment(0.005, 0.015, "b")]
    assert frame_counts(pred, truth) == Counts(tp=15, fp=0, fn=0)


def test_counts_arithmetic_and_empty_conventions() -> None:
    assert Counts(1, 2, 3) + Counts(4, 5, 6) == Counts(5, 7, 9)
    assert Counts().f1 == 1.0
    nothing_predicted = Counts(tp=0, fp=0, fn=3)
    assert (nothing_predicted.precision, nothing_predicted.recall, nothing_predicted.f1) == (
        1.0,
        0.0,
        0.0,
    )
    assert Counts(tp=2, fp=1, fn=1).f1 == pytest.approx(2 / 3)


def test_empty_inputs() -> None:
    assert segment_counts([], [], TOL) == Counts()
    assert frame_counts([], []) == Counts()
    assert segment_counts([Segment(0.1, 0.2, "a")], [], TOL) == Counts(0, 1, 0)


def test_evaluate_files_sums_counts_before_f1() -> None:
    hit = Segment(0.1, 0.2, "a")
    missed = [Segment(1.0, 1.1, "a"), Segment(2.0, 2.1, "a"), Segment(3.0, 3.1, "a")]
    # Per-file F1 would be 1.0 and 0.0 (mean 0.5); summed counts give tp 1, fn 3.
    result = evaluate_files([([hit], [hit]), ([], missed)], tolerance=TOL, time_per_frame=0.001)
    assert (result["segment_tp"], result["segment_fp"], result["segment_fn"]) == (1, 0, 3)
    assert result["segment_f1"] == pytest.approx(2 / 5)
    assert (result["frame_tp"], result["frame_fn"]) == (100, 300)
    assert result["frame_f1"] == pytest.approx(200 / 500)
