"""Scenes: whole windows composed of a few labelled calls and the quiet between them."""

from __future__ import annotations

import numpy as np
import pytest

from whisperseg.scenes import SCENE_WINDOWS, compose_scenes, with_scenes
from whisperseg.segment import Segment
from whisperseg.training import TrainingExample

SR = 16000


def _labelled_area(seed: int = 0) -> TrainingExample:
    """Three seconds of quiet noise with five loud tones, each labelled: what a person
    labels first."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(0, 0.01, 3 * SR).astype(np.float32)
    segments = []
    for onset in (0.3, 0.8, 1.4, 2.0, 2.5):
        start, length = round(onset * SR), round(0.2 * SR)
        audio[start : start + length] += 0.5 * np.sin(np.arange(length) * 0.3)
        segments.append(Segment(onset, onset + 0.2, "call"))
    return TrainingExample(audio, SR, tuple(segments), 0.0, 500.0, source="rec1")


def _loud(audio: np.ndarray, segment: Segment) -> float:
    inside = audio[round(segment.onset * SR) : round(segment.offset * SR)]
    return float(np.sqrt(np.mean(inside**2)))


def test_a_scene_is_labelled_wherever_a_call_was_pasted_and_quiet_elsewhere() -> None:
    scenes = compose_scenes([_labelled_area()], seconds=20.0, count=3, seed=1)
    assert len(scenes) == 3
    for scene in scenes:
        assert scene.duration == 20.0 and scene.sr == SR
        assert scene.min_frequency == 500.0 and scene.source == "rec1"
        # Gaps like the labelled ones (0.3-0.4 s): about 20 / 0.55 calls.
        assert 25 <= len(scene.segments) <= 45
        quiet = np.ones(scene.audio.size, dtype=bool)
        for s in scene.segments:
            assert 0 <= s.onset < s.offset <= 20.0
            assert abs(s.duration - 0.2) < 1e-3 and s.cluster == "call"
            assert abs(_loud(scene.audio, s) - 0.35) < 0.02  # the tone's level, unchanged
            quiet[round(s.onset * SR) : round(s.offset * SR)] = False
        assert float(np.sqrt(np.mean(scene.audio[quiet] ** 2))) < 0.02  # the background


def test_scenes_are_reproducible_and_differ_between_seeds() -> None:
    first = compose_scenes([_labelled_area()], 10.0, 2, seed=3)
    again = compose_scenes([_labelled_area()], 10.0, 2, seed=3)
    other = compose_scenes([_labelled_area()], 10.0, 2, seed=4)
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(first, again, strict=True))
    assert [s.segments for s in first] != [s.segments for s in other]


def test_no_scene_without_a_whole_call_or_any_quiet() -> None:
    area = _labelled_area()
    cut_calls = TrainingExample(area.audio, SR, (Segment(0.0, 3.0, "call"),), 0.0)
    assert compose_scenes([cut_calls], 10.0, 4) == []
    assert with_scenes([cut_calls], 5.0, 0.5) == [cut_calls]
    assert with_scenes([area], 5.0, 0.0) == [area]
    with pytest.raises(ValueError, match="share"):
        with_scenes([area], 5.0, 1.0)


def test_scenes_take_the_asked_share_of_training_crops() -> None:
    area = _labelled_area()
    window = 5.0
    composed = with_scenes([area], window, 0.5)
    real, scenes = composed[0], composed[1:]
    assert real is area and scenes
    # Crops are drawn in proportion to weight * (1 + windows in the clip).
    draw = [e.weight * (1 + e.duration / window) for e in composed]
    assert abs(sum(draw[1:]) / sum(draw) - 0.5) < 1e-9
    assert all(s.duration == SCENE_WINDOWS * window for s in scenes)


def test_each_scene_is_made_of_one_recordings_material() -> None:
    loud = _labelled_area()
    soft = TrainingExample(
        loud.audio * 0.01, SR, tuple(Segment(s.onset, s.offset, "soft") for s in loud.segments),
        0.0, source="rec2",
    )  # fmt: skip
    for scene in compose_scenes([loud, soft], 10.0, 8, seed=0):
        names = {s.cluster for s in scene.segments}
        assert names == ({"call"} if scene.source == "rec1" else {"soft"})
