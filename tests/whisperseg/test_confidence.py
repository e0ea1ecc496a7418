"""Confidence: the decoder's boundary scores, the evidence, the shipped calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHIPPED_MODEL

from whisperseg import confidence, ct2
from whisperseg.confidence import Calibration, calibrations_for, whisperseg_evidence
from whisperseg.datasets import find_recordings, load_recording, split_recordings
from whisperseg.evaluation import recording_config
from whisperseg.initialize import random_tiny
from whisperseg.metrics import matched_predictions
from whisperseg.model import BOUNDARY_NEIGHBOURHOOD, WhisperSegModel
from whisperseg.segment import Segment
from whisperseg.segmentation import segment_recording
from whisperseg.segmenters import EnergySegmenter
from whisperseg.target_text import parse_tokens, time_token


def test_a_segment_scores_the_product_of_its_boundary_tokens() -> None:
    pieces = ["<|unknown|>", "<|3|>", "0", "<|9|>", "<|12|>", "1", "<|20|>"]
    scores = [1.0, 0.5, 0.9, 0.8, 1.0, 1.0, 0.25]
    found = parse_tokens(pieces, scores, 50)
    assert [(s.onset, s.offset, s.cluster_id) for s in found] == [(3, 9, 0), (12, 20, 1)]
    assert [s.score for s in found] == pytest.approx([0.4, 0.25])
    assert [s.score for s in parse_tokens(pieces, None, 50)] == [1.0, 1.0]


def test_a_boundary_scores_the_probability_of_the_time_tokens_near_it() -> None:
    model = random_tiny(d_model=32)
    vocabulary = model.network.config.vocab_size
    index = {i: model.tokenizer.hf.convert_tokens_to_ids(time_token(i)) for i in range(40)}
    logits = torch.full((2, vocabulary), float("-inf"))
    # Row 0: the mass spread over times 10-14, chosen 12: all of it is near.
    logits[0, [index[i] for i in range(10, 15)]] = 0.0
    # Row 1: half on time 5, half on time 30: chosen 5 keeps half.
    logits[1, [index[5], index[30]]] = 0.0
    scores = model.token_scores(logits, [index[12], index[5]])
    assert scores == pytest.approx([1.0, 0.5])
    assert BOUNDARY_NEIGHBOURHOOD == 2


def test_evidence_sees_trial_agreement_loudness_and_odd_lengths() -> None:
    sr = 16000
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.001, 4 * sr).astype(np.float32)
    t = np.arange(int(0.1 * sr)) / sr
    audio[sr : sr + len(t)] += 0.3 * np.sin(2 * np.pi * 3000 * t)  # loud call at 1.0 s
    audio[2 * sr : 2 * sr + len(t)] += 0.003 * np.sin(2 * np.pi * 3000 * t)  # faint at 2.0 s
    final = [Segment(1.0, 1.1, "a", 1.0), Segment(2.0, 2.1, "a", 2 / 3), Segment(3, 3.6, "a")]
    trials = [
        [Segment(1.0, 1.1, "a", 0.9), Segment(2.0, 2.1, "a", 0.3), Segment(3, 3.6, "a", 0.8)],
        [Segment(1.0, 1.1, "a", 0.9), Segment(2.02, 2.1, "a", 0.5), Segment(3, 3.6, "a", 0.8)],
        [Segment(1.0, 1.1, "a", 0.9), Segment(3, 3.6, "a", 0.8)],
    ]
    evidence = whisperseg_evidence(final, trials, audio, sr, None)
    assert evidence["vote"].tolist() == pytest.approx([1.0, 2 / 3, 1.0])
    assert evidence["overlap"][0] == pytest.approx(1.0)
    assert evidence["overlap"][1] < 2 / 3
    assert evidence["boundary"].tolist() == pytest.approx([0.9, 0.8 / 3, 0.8])
    assert evidence["snr"][0] > evidence["snr"][1] + 2  # 40 dB louder, in dB / 10
    assert evidence["duration"][2] > evidence["duration"][0]


def test_the_shipped_calibration_covers_both_decoders_and_the_energy_baseline(
    tmp_path: Path,
) -> None:
    shipped = calibrations_for(None)
    assert set(shipped) == {confidence.SCORED, confidence.UNSCORED, confidence.ENERGY}
    for name, calibration in shipped.items():
        assert set(calibration.features) <= set(confidence.FEATURES[name])
        assert len(calibration.coef) == len(calibration.features) == len(calibration.mean)
    # A model folder's own file overrides what it names.
    own = Calibration(("snr",), (0.0,), (1.0,), (0.0,), 0.0)  # always 0.5
    payload = {"calibrations": {confidence.SCORED: own.to_dict()}}
    (tmp_path / "confidence.json").write_text(json.dumps(payload))
    mine = calibrations_for(tmp_path)
    assert mine[confidence.SCORED] == own and mine[confidence.ENERGY] == shipped["energy"]
    assert own.probability({"snr": np.array([3.0, -1.0])}).tolist() == [0.5, 0.5]


def test_energy_segments_get_a_confidence_that_grows_with_loudness() -> None:
    sr = 16000
    rng = np.random.default_rng(1)
    audio = rng.normal(0, 0.002, 3 * sr).astype(np.float32)
    t = np.arange(int(0.08 * sr)) / sr
    for at, amplitude in ((0.5, 0.5), (1.5, 0.02)):
        start = int(at * sr)
        audio[start : start + len(t)] += amplitude * np.sin(2 * np.pi * 2000 * t)
    found = EnergySegmenter().segment(audio, sr)
    assert len(found) == 2
    assert all(0 <= s.confidence <= 1 for s in found)
    assert found[0].confidence > found[1].confidence


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED_MODEL.is_dir(), reason="shipped model missing")
def test_confidence_predicts_right_segments_on_both_decoders(
    shared_data: Path, tmp_path: Path
) -> None:
    """Held-out zebra finch juveniles: confident segments are right, and CTranslate2's
    boundary scores give about the same confidence as torch's."""
    folder = tmp_path / "shipped"
    WhisperSegModel.load(SHIPPED_MODEL, device="cpu").save(folder)
    models = [WhisperSegModel.load(folder, device="cpu", quantize=True)]
    if ct2.available():
        models.append(WhisperSegModel.load(folder, device="cpu", backend="ct2"))
        assert models[1].scores_boundaries
    files = split_recordings(find_recordings(shared_data / "zebra_finch" / "juveniles"))[1]
    recording = max((load_recording(p) for p in files[:4]), key=lambda r: len(r.segments))
    config = recording_config(recording)
    found = [segment_recording(m, recording.audio, recording.sr, config) for m in models]
    for segments in found:
        assert segments and all(0 <= s.confidence <= 1 for s in segments)
        right = matched_predictions(segments, recording.segments, recording.tolerance, False)
        sure = np.array([s.confidence >= 0.9 for s in segments])
        assert right[sure].mean() >= 0.95
    if len(found) == 2:
        shared = [
            (a.confidence, b.confidence)
            for a in found[0]
            for b in found[1]
            if abs(a.onset - b.onset) + abs(a.offset - b.offset) <= 0.01
        ]
        assert len(shared) >= len(found[0]) * 0.9
        assert np.mean([abs(a - b) for a, b in shared]) < 0.05


def test_a_model_saves_its_own_calibration_and_loads_it_back(tmp_path: Path) -> None:
    """A model with a calibration of its own (as a copy finetuned from such a base has)
    saves it with its weights; one with the shipped calibrations writes no file."""
    model = random_tiny(d_model=32)
    model.save(tmp_path / "plain")
    assert not (tmp_path / "plain" / confidence.CALIBRATION_FILE).exists()
    own = Calibration(("snr",), (0.0,), (1.0,), (0.5,), 1.0)
    model.calibrations = {**model.calibrations, confidence.SCORED: own}
    model.save(tmp_path / "own")
    loaded = WhisperSegModel.load(tmp_path / "own", device="cpu")
    assert loaded.calibrations == model.calibrations
    assert loaded.calibrations[confidence.SCORED] == own
