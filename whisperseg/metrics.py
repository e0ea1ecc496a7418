"""Segment-level and frame-level scoring, as WhisperSeg reports it.

Counts (not scores) are the unit of aggregation: :func:`evaluate_files` sums
them over files before computing F1, so long files weigh more than short ones
and files without any vocalisation still contribute their false positives.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from whisperseg.segment import Segment

# Slack added to the boundary tolerance so that differences which are exactly
# ``tolerance`` in decimal (e.g. 0.51 - 0.50) still count after float rounding.
_FLOAT_SLACK = 1e-9


@dataclass(frozen=True, slots=True)
class Counts:
    """True positives, false positives and false negatives of one comparison.

    Empty denominators score 1.0: with nothing predicted no prediction was
    wrong (precision), with nothing labelled nothing was missed (recall), and a
    file without labels or predictions is a perfect agreement (F1). This keeps
    ``f1 == 2 tp / (2 tp + fp + fn)`` in every case.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 1.0


def _cluster_codes(
    pred: Sequence[Segment], truth: Sequence[Segment], match_cluster: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Integer cluster codes (1-based, alphabetical) shared by both lists; all 1 when ignored."""
    if not match_cluster:
        return np.ones(len(pred), dtype=np.int64), np.ones(len(truth), dtype=np.int64)
    names = sorted({s.cluster for s in pred} | {s.cluster for s in truth})
    code = {name: i + 1 for i, name in enumerate(names)}
    return (
        np.array([code[s.cluster] for s in pred], dtype=np.int64),
        np.array([code[s.cluster] for s in truth], dtype=np.int64),
    )


def _times(segments: Sequence[Segment]) -> tuple[np.ndarray, np.ndarray]:
    onsets = np.array([s.onset for s in segments], dtype=np.float64)
    offsets = np.array([s.offset for s in segments], dtype=np.float64)
    return onsets, offsets


def segment_counts(
    pred: Sequence[Segment],
    truth: Sequence[Segment],
    tolerance: float,
    match_cluster: bool = True,
) -> Counts:
    """Count one-to-one matches between predicted and true segments.

    A pair can match when both boundaries are within ``tolerance`` seconds and
    (unless ``match_cluster`` is False) the clusters agree. Pairs are taken
    greedily, closest first (sum of the two boundary errors), each segment at
    most once, so two predictions of one syllable give one TP and one FP.
    Candidates come from a sorted onset search, not an all-pairs matrix.
    """
    tp = int(matched_predictions(pred, truth, tolerance, match_cluster).sum())
    return Counts(tp=tp, fp=len(pred) - tp, fn=len(truth) - tp)


def matched_predictions(
    pred: Sequence[Segment],
    truth: Sequence[Segment],
    tolerance: float,
    match_cluster: bool = True,
) -> np.ndarray:
    """Which predictions :func:`segment_counts` counts as true positives (bool per one)."""
    pred_codes, truth_codes = _cluster_codes(pred, truth, match_cluster)
    p_on, p_off = _times(pred)
    t_on, t_off = _times(truth)
    order = np.argsort(t_on, kind="stable")
    t_on, t_off, truth_codes = t_on[order], t_off[order], truth_codes[order]

    limit = tolerance + _FLOAT_SLACK
    lo = np.searchsorted(t_on, p_on - limit, side="left")
    hi = np.searchsorted(t_on, p_on + limit, side="right")
    widths = hi - lo
    pi = np.repeat(np.arange(len(pred)), widths)
    ti = _ranges(lo, widths)

    d_on = np.abs(p_on[pi] - t_on[ti])
    d_off = np.abs(p_off[pi] - t_off[ti])
    ok = (d_on <= limit) & (d_off <= limit) & (pred_codes[pi] == truth_codes[ti])
    pi, ti, cost = pi[ok], ti[ok], (d_on + d_off)[ok]

    used_pred = np.zeros(len(pred), dtype=bool)
    used_truth = np.zeros(len(truth), dtype=bool)
    for k in np.lexsort((ti, pi, cost)):
        if not (used_pred[pi[k]] or used_truth[ti[k]]):
            used_pred[pi[k]] = used_truth[ti[k]] = True
    return used_pred


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(start, start + length)`` for each pair, without a Python loop."""
    rank = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + rank


def _frame_labels(
    segments: Sequence[Segment], codes: np.ndarray, num_bins: int, time_per_frame: float
) -> np.ndarray:
    """Cluster code of every time bin (0 = unlabelled).

    Boundaries snap to the nearest bin edge. Where segments of different
    clusters overlap, the alphabetically last cluster takes the bin, so
    overlaps stay deterministic; memory grows with the labelled bins only.
    """
    labels = np.zeros(num_bins, dtype=np.int64)
    onsets, offsets = _times(segments)
    start = np.clip(np.rint(onsets / time_per_frame).astype(np.int64), 0, num_bins)
    end = np.clip(np.rint(offsets / time_per_frame).astype(np.int64), 0, num_bins)
    lengths = np.maximum(end - start, 0)
    np.maximum.at(labels, _ranges(start, lengths), np.repeat(codes, lengths))
    return labels


def frame_counts(
    pred: Sequence[Segment],
    truth: Sequence[Segment],
    time_per_frame: float = 0.001,
    match_cluster: bool = True,
) -> Counts:
    """Count time bins of ``time_per_frame`` seconds labelled alike.

    TP: a labelled bin whose predicted cluster is the true one. FP: a bin
    predicted as some cluster that is not its true one (including unlabelled
    bins). FN: a labelled bin not predicted as its cluster. A bin with the
    wrong cluster is therefore both an FP and an FN.
    """
    pred_codes, truth_codes = _cluster_codes(pred, truth, match_cluster)
    ends = [s.offset for s in pred] + [s.offset for s in truth]
    num_bins = int(np.rint(max(ends, default=0.0) / time_per_frame)) + 1
    p = _frame_labels(pred, pred_codes, num_bins, time_per_frame)
    t = _frame_labels(truth, truth_codes, num_bins, time_per_frame)
    agree = p == t
    return Counts(
        tp=int(np.count_nonzero(agree & (t > 0))),
        fp=int(np.count_nonzero(~agree & (p > 0))),
        fn=int(np.count_nonzero(~agree & (t > 0))),
    )


def _summary(prefix: str, counts: Counts) -> dict[str, float | int]:
    return {
        f"{prefix}_precision": counts.precision,
        f"{prefix}_recall": counts.recall,
        f"{prefix}_f1": counts.f1,
        f"{prefix}_tp": counts.tp,
        f"{prefix}_fp": counts.fp,
        f"{prefix}_fn": counts.fn,
    }


def evaluate_files(
    pairs: Iterable[tuple[Sequence[Segment], Sequence[Segment]]],
    tolerance: float,
    time_per_frame: float = 0.001,
    match_cluster: bool = True,
) -> dict[str, float | int]:
    """Score (prediction, truth) pairs of many files with counts summed over files.

    Returns a flat, JSON-ready dict: ``segment_precision``, ``segment_recall``,
    ``segment_f1``, ``segment_tp/fp/fn`` and the same keys for ``frame``.
    """
    seg_total, frame_total = Counts(), Counts()
    for pred, truth in pairs:
        seg_total += segment_counts(pred, truth, tolerance, match_cluster)
        frame_total += frame_counts(pred, truth, time_per_frame, match_cluster)
    return {**_summary("segment", seg_total), **_summary("frame", frame_total)}
