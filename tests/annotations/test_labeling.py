"""The /get-labels merge rule and the /finetune-whisperseg training clips (annotations.labels)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotations.labels import (
    Label,
    LabelledRecording,
    NoTrainingData,
    merge_labels,
    training_clips,
)
from whisperseg.segment import CLUSTER_SEPARATOR, Segment, join_cluster, split_cluster
from whisperseg.segmentation import time_step_from_labels

SR = 1000
AUDIO = np.arange(10 * SR, dtype=np.float32)  # 10 s; sample value = its index


def test_cluster_join_and_split_round_trip():
    cluster = join_cluster("zebra finch", "bird 7", "A")
    assert cluster == f"zebra finch{CLUSTER_SEPARATOR}bird 7{CLUSTER_SEPARATOR}A"
    assert split_cluster(cluster) == ("zebra finch", "bird 7", "A")


def test_plain_cluster_is_the_cluster_name_of_an_unknown_species():
    assert split_cluster("vocal") == ("Unknown", "Unknown", "vocal")
    assert Label.from_segment(Segment(1.0, 2.0, "vocal")) == Label(1.0, 2.0, clustername="vocal")


def _human(onset: float, offset: float, name: str = "h") -> Label:
    return Label(onset, offset, "finch", "bird", name)


def test_merge_keeps_humans_inside_areas_and_predictions_outside():
    areas = [(2.0, 4.0), (8.0, 9.0)]
    humans = [_human(2.5, 3.0, "in"), _human(3.8, 4.5, "straddles"), _human(6.0, 7.0, "outside")]
    predictions = [
        Segment(0.5, 1.0, "before"),
        Segment(1.9, 2.1, "overlaps area"),
        Segment(5.0, 6.0, "between"),
        Segment(8.5, 8.6, "inside"),
    ]
    merged = merge_labels(predictions, humans, areas)
    assert [label.clustername for label in merged] == ["before", "in", "straddles", "between"]
    assert merged[1] == humans[0]
    assert merged[0] == Label(0.5, 1.0, "Unknown", "Unknown", "before")


def test_merge_touching_an_area_edge_is_outside_it():
    merged = merge_labels([Segment(1.0, 2.0, "p")], [_human(4.0, 5.0)], [(2.0, 4.0)])
    assert [label.clustername for label in merged] == ["p"]


def test_merge_without_areas_returns_only_predictions_sorted():
    cluster = join_cluster("finch", "b2", "C")
    predictions = [Segment(3.0, 4.0, cluster), Segment(1.0, 2.0, "x")]
    merged = merge_labels(predictions, [_human(0.0, 9.0)], [])
    assert merged == [Label(1.0, 2.0, clustername="x"), Label(3.0, 4.0, "finch", "b2", "C")]


def test_merge_ignores_empty_and_reversed_areas():
    merged = merge_labels([Segment(1.0, 3.0, "p")], [_human(1.5, 2.5)], [(2.0, 2.0), (3.0, 1.0)])
    assert [label.clustername for label in merged] == ["p"]


def test_training_clips_cut_clip_and_shift_labels():
    humans = [_human(2.2, 2.5, "inside"), _human(3.78, 4.3, "straddles"), _human(6.0, 6.5, "out")]
    clips = training_clips(
        [LabelledRecording(AUDIO, SR, [(2.0, 4.0)], humans)], min_frequency=300.0
    )
    assert len(clips) == 1
    clip = clips[0]
    np.testing.assert_array_equal(clip.audio, AUDIO[2000:4000])
    assert clip.sr == SR and clip.min_frequency == 300.0
    sep = CLUSTER_SEPARATOR
    assert [(round(s.onset, 6), round(s.offset, 6), s.cluster) for s in clip.segments] == [
        (0.2, 0.5, f"finch{sep}bird{sep}inside"),
        (1.78, 2.0, f"finch{sep}bird{sep}straddles"),
    ]
    # from the clipped durations (0.3 s, 0.22 s): median 0.26 s / 25, rounded up to 0.5 ms
    assert clip.spec_time_step == pytest.approx(0.0105)


def test_training_clips_given_time_step_and_areas_without_labels():
    recording = LabelledRecording(AUDIO, SR, [(1.0, 2.0), (5.0, 6.0)], [_human(1.2, 1.5)])
    clips = training_clips([recording], 0.004)
    assert [len(c.segments) for c in clips] == [1, 0]  # the empty area teaches "nothing here"
    assert all(c.spec_time_step == 0.004 for c in clips)


def test_training_clips_from_several_recordings_share_one_time_step():
    other_rate = 2000
    other = np.linspace(-1, 1, 4 * other_rate, dtype=np.float32)
    first = LabelledRecording(AUDIO, SR, [(1.0, 2.0)], [_human(1.2, 1.3)])
    second = LabelledRecording(other, other_rate, [(0.0, 4.0)], [_human(1.0, 1.5)])
    clips = training_clips([first, second])
    assert [(c.sr, len(c.audio)) for c in clips] == [(SR, 1000), (other_rate, 8000)]
    # both recordings' labels (0.1 s and 0.5 s long) decide the common step
    step = time_step_from_labels([s.duration for c in clips for s in c.segments])
    assert 0.3 / 25 <= step <= 0.3 / 25 + 0.0005 + 1e-9  # a 25th of the median, rounded up
    assert [c.spec_time_step for c in clips] == [step, step]


def test_training_clips_skip_invalid_areas_and_clip_to_the_audio():
    areas = [(3.0, 3.0), (5.0, 4.0), (11.0, 12.0), (-5.0, -1.0), (math.nan, 2.0), (9.5, 20.0)]
    clips = training_clips(
        [LabelledRecording(AUDIO, SR, areas, [_human(9.6, 9.8), _human(3.0, 3.5)])]
    )
    assert len(clips) == 1
    np.testing.assert_array_equal(clips[0].audio, AUDIO[9500:])


@pytest.mark.parametrize(
    ("areas", "labels"),
    [
        ([], [_human(1.0, 2.0)]),
        ([(3.0, 1.0), (20.0, 30.0)], [_human(1.0, 2.0)]),
        ([(1.0, 2.0)], [_human(5.0, 6.0)]),
        ([(1.0, 2.0)], [Label(1.5, 1.5), Label(1.8, 1.2)]),
    ],
)
def test_no_valid_training_data(areas, labels):
    with pytest.raises(NoTrainingData, match="No valid training data specified"):
        training_clips([LabelledRecording(AUDIO, SR, areas, labels)])
