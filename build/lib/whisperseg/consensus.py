"""Consensus of several segmentation trials (WhisperSeg segmentation step 5).

Each trial segments the same audio with windows shifted by a fraction of a
window, so a segment cut by a window edge in one trial is whole in another.
Segments that most trials agree on survive; the share of trials that found a
segment is kept as its confidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.neighbors import radius_neighbors_graph

from whisperseg.segment import Segment


def consensus(trials: Sequence[Sequence[Segment]], eps: float) -> list[Segment]:
    """Merge the segments of ``trials`` into one list sorted by onset.

    DBSCAN groups segments whose distance, the mean of the onset and offset
    differences, is at most ``eps`` seconds; a group grows from segments with
    at least ``max(2, ceil(num_trials / 2))`` segments (themselves included)
    that close. A group yields the mean onset/offset, its most frequent
    cluster (ties: alphabetically first) and confidence = distinct trials in
    the group / num_trials. Ungrouped segments are dropped. With a single
    trial the segments pass through (confidence 1).

    The neighbourhood is a sparse radius graph, so memory and time grow with
    the number of close pairs, not with the square of the segment count.
    """
    num_trials = len(trials)
    if num_trials == 1:
        return sorted((replace(s, confidence=1.0) for s in trials[0]), key=_onset_key)
    flat = [(s, k) for k, trial in enumerate(trials) for s in trial]
    if not flat:
        return []

    times = np.array([(s.onset, s.offset) for s, _ in flat], dtype=np.float64)
    # Mean of |d onset| and |d offset| is the Manhattan distance of (onset, offset) / 2.
    graph = radius_neighbors_graph(times / 2.0, radius=eps, mode="distance", metric="manhattan")
    min_samples = max(2, math.ceil(num_trials / 2))
    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(graph)

    keep = labels >= 0
    if not keep.any():
        return []
    group = labels[keep]
    num_groups = int(group.max()) + 1
    sizes = np.bincount(group, minlength=num_groups)
    onsets = np.bincount(group, weights=times[keep, 0], minlength=num_groups) / sizes
    offsets = np.bincount(group, weights=times[keep, 1], minlength=num_groups) / sizes

    trial_ids = np.array([k for _, k in flat], dtype=np.int64)[keep]
    distinct = np.unique(group * num_trials + trial_ids) // num_trials
    confidence = np.bincount(distinct, minlength=num_groups) / num_trials

    names = sorted({s.cluster for s, _ in flat})
    code = {name: i for i, name in enumerate(names)}
    codes = np.array([code[s.cluster] for s, _ in flat], dtype=np.int64)[keep]
    majority = _majority(group, codes, num_groups)

    merged = [
        Segment(float(on), float(off), names[c], float(conf))
        for on, off, c, conf in zip(onsets, offsets, majority, confidence, strict=True)
    ]
    return sorted(merged, key=_onset_key)


def _majority(group: np.ndarray, codes: np.ndarray, num_groups: int) -> np.ndarray:
    """Most frequent code per group; ties go to the smallest code."""
    pairs, counts = np.unique(np.stack([group, codes]), axis=1, return_counts=True)
    # Sort by group, then count descending, then code; the first row of each group wins.
    order = np.lexsort((pairs[1], -counts, pairs[0]))
    pairs = pairs[:, order]
    first = np.r_[True, pairs[0, 1:] != pairs[0, :-1]]
    result = np.empty(num_groups, dtype=np.int64)
    result[pairs[0, first]] = pairs[1, first]
    return result


def _onset_key(segment: Segment) -> tuple[float, float]:
    return segment.onset, segment.offset
