"""Where to label next: areas of recordings whose labels would teach the model most.

Pure science: each recording's predicted segments (with their confidence), the energy
baseline's segments and the areas already labelled go in; non-overlapping areas, best
first, within a budget of seconds come out. An area scores by

- the errors the model expects to make there: the sum of ``1 - confidence`` of the
  predictions in it (calibrated confidence: the expected number of wrong segments);
- disagreement with the energy baseline: its calls the model does not find and the
  model's calls it does not hear (a blind model on a new species is still caught);
- how much there is to label: a little for each predicted call, so a busy area beats
  a quiet one when both are certain.

Areas are picked greedily. While the budget lasts, every recording with no label gets an
area before any recording gets a second: a recording nobody labelled is where the model's
conditions are least known, and a model blind to it (nothing found, by it or the baseline)
scores it near zero. Every pick also lowers the score of further areas of the same
recording and of the same kind (cluster and duration class of the area's calls), so a
budget spreads over recordings and call types instead of labelling one song ten times.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from whisperseg.segment import Segment

Interval = tuple[float, float]

UNCERTAINTY_WEIGHT = 1.0  # per expected wrong segment
DISAGREEMENT_WEIGHT = 0.5  # per call only one of model and baseline finds
CALL_WEIGHT = 0.1  # per predicted call
SAME_RECORDING_FACTOR = 0.7  # score kept by an area of a recording picked before, per pick
SAME_KIND_FACTOR = 0.8  # ... and of a kind picked before, per pick
CANDIDATE_STEPS = 4  # candidate areas start every area / this
MAX_CANDIDATES = 200_000  # bounds the work on hours of audio: the step grows instead
MIN_AREA_SECONDS = 0.05
MAX_AREAS = 1000  # a budget of many tiny areas stops here


@dataclass(frozen=True)
class RecordingPredictions:
    """One recording: its length, the model's and the baseline's segments, what is labelled."""

    audio_id: str
    duration: float
    segments: Sequence[Segment]
    baseline: Sequence[Segment] = ()
    annotated: Sequence[Interval] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class SuggestedArea:
    audio_id: str
    onset: float
    offset: float
    score: float


def default_area_seconds(total_seconds: float, segments: Sequence[Segment]) -> float:
    """A quarter of the budget within 1-8 s, long enough for ~10 median calls with gaps."""
    area = min(8.0, max(1.0, total_seconds / 4))
    durations = [s.duration for s in segments if s.duration > 0]
    if durations:
        area = max(area, min(8.0, 20 * float(np.median(durations))))
    return min(area, total_seconds)


def free_intervals(duration: float, annotated: Sequence[Interval]) -> list[Interval]:
    """The parts of [0, duration] outside every annotated area."""
    free, at = [], 0.0
    for onset, offset in sorted((max(0.0, a), min(duration, b)) for a, b in annotated if b > a):
        if onset > at:
            free.append((at, onset))
        at = max(at, offset)
    if duration > at:
        free.append((at, duration))
    return free


def _unmatched(segments: Sequence[Segment], others: Sequence[Segment]) -> list[Segment]:
    """Segments of ``segments`` that no segment of ``others`` overlaps."""
    if not others:
        return list(segments)
    ends = np.array(sorted(s.offset for s in others))
    starts = np.array(sorted(s.onset for s in others))
    lonely = []
    for s in segments:
        # Overlap exists iff some other starts before s ends and ends after s starts:
        # count(onset < s.offset) > count(offset <= s.onset).
        if np.searchsorted(starts, s.offset, "left") <= np.searchsorted(ends, s.onset, "right"):
            lonely.append(s)
    return lonely


def _kind(segment: Segment, median: float) -> tuple[str, int]:
    """Cluster and duration class (halvings and doublings of the median, -2 to 2)."""
    ratio = segment.duration / median if median > 0 else 1.0
    return segment.cluster, int(np.clip(round(math.log2(max(ratio, 1e-6))), -2, 2))


@dataclass
class _Candidates:
    recording: np.ndarray  # index into the recordings
    onset: np.ndarray
    offset: np.ndarray
    score: np.ndarray
    kind: np.ndarray  # code of the area's most common kind of call, -1 without calls


def _candidates(
    recordings: Sequence[RecordingPredictions], area: float, median: float
) -> _Candidates:
    total_free = sum(b - a for r in recordings for a, b in free_intervals(r.duration, r.annotated))
    step = max(area / CANDIDATE_STEPS, total_free / MAX_CANDIDATES)
    rec, ons, offs, scores, kinds = [], [], [], [], []
    codes: dict[tuple[str, int], int] = {}
    for index, r in enumerate(recordings):
        segments = sorted(r.segments, key=lambda s: s.onset)
        mids = np.array([(s.onset + s.offset) / 2 for s in segments])
        weights = np.array(
            [
                UNCERTAINTY_WEIGHT * (1 - min(1.0, max(0.0, s.confidence))) + CALL_WEIGHT
                for s in segments
            ]
        )
        lonely = _unmatched(segments, r.baseline) + _unmatched(r.baseline, segments)
        lonely_mids = np.sort([(s.onset + s.offset) / 2 for s in lonely])
        cumulative = np.r_[0.0, np.cumsum(weights)]
        seg_kinds = [codes.setdefault(_kind(s, median), len(codes)) for s in segments]
        for start, end in free_intervals(r.duration, r.annotated):
            if end - start < MIN_AREA_SECONDS:
                continue
            length = min(area, end - start)
            last = end - length
            count = int(math.floor((last - start) / step + 1e-9)) + 1
            onsets = start + step * np.arange(count)
            if onsets[-1] < last - 1e-9:
                onsets = np.r_[onsets, last]
            offsets = onsets + length
            lo, hi = np.searchsorted(mids, onsets), np.searchsorted(mids, offsets)
            lonely_count = np.searchsorted(lonely_mids, offsets) - np.searchsorted(
                lonely_mids, onsets
            )
            scores.append(cumulative[hi] - cumulative[lo] + DISAGREEMENT_WEIGHT * lonely_count)
            for a, b in zip(lo, hi, strict=True):
                inside = Counter(seg_kinds[a:b])
                kinds.append(inside.most_common(1)[0][0] if inside else -1)
            rec.append(np.full(len(onsets), index))
            ons.append(onsets)
            offs.append(offsets)
    if not rec:
        empty = np.zeros(0)
        return _Candidates(empty.astype(int), empty, empty, empty, empty.astype(int))
    return _Candidates(
        np.concatenate(rec),
        np.concatenate(ons),
        np.concatenate(offs),
        np.concatenate(scores),
        np.array(kinds, dtype=np.int64),
    )


def suggest_areas(
    recordings: Sequence[RecordingPredictions],
    total_seconds: float,
    area_seconds: float | None = None,
) -> list[SuggestedArea]:
    """Areas to label next, best first: together at most ``total_seconds``, none
    overlapping another or an annotated area, each ``area_seconds`` long (default:
    :func:`default_area_seconds`) or shorter where the free stretch or the budget is;
    at most :data:`MAX_AREAS` of them.

    Recordings without labels get one area each first (best of them first), then all
    compete. ``score`` is what an area was picked with: its expected wrong segments, plus
    half a point per call the model and the energy baseline disagree on, plus 0.1 per
    predicted call, lowered for recordings and call kinds already suggested.
    """
    if total_seconds <= 0:
        return []
    all_segments = [s for r in recordings for s in r.segments]
    area = area_seconds or default_area_seconds(total_seconds, all_segments)
    area = min(area, total_seconds)
    durations = [s.duration for s in all_segments if s.duration > 0]
    median = float(np.median(durations)) if durations else 0.0
    c = _candidates(recordings, area, median)
    alive = np.ones(len(c.score), dtype=bool)
    factor = np.ones(len(c.score))
    unlabelled = np.array([not r.annotated for r in recordings], dtype=bool)[c.recording]
    picked: list[SuggestedArea] = []
    budget = total_seconds
    while budget >= MIN_AREA_SECONDS and alive.any() and len(picked) < MAX_AREAS:
        first_turn = alive & unlabelled
        current = np.where(first_turn if first_turn.any() else alive, c.score * factor, -np.inf)
        best = int(np.argmax(current))
        onset, offset = float(c.onset[best]), float(c.offset[best])
        if offset - onset > budget:  # the last area: as much as the budget leaves, centred
            middle = (onset + offset) / 2
            onset, offset = middle - budget / 2, middle + budget / 2
        # Inwards to whole milliseconds: never into an annotated area or another pick.
        onset, offset = (
            math.ceil(onset * 1000 - 1e-6) / 1000,
            math.floor(offset * 1000 + 1e-6) / 1000,
        )
        alive[best] = False
        if offset - onset < MIN_AREA_SECONDS:
            continue
        r = recordings[int(c.recording[best])]
        picked.append(SuggestedArea(r.audio_id, onset, offset, round(float(current[best]), 4)))
        budget -= offset - onset
        same = c.recording == c.recording[best]
        unlabelled &= ~same
        alive &= ~(same & (c.onset < offset) & (c.offset > onset))
        factor[same] *= SAME_RECORDING_FACTOR
        if c.kind[best] >= 0:
            factor[c.kind == c.kind[best]] *= SAME_KIND_FACTOR
    return picked
