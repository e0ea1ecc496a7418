"""What the server hands a worker: audio by content hash, clips and settings as JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from distributed import shared_audio
from distributed.messages import (
    config_from_message,
    config_to_message,
    example_from_message,
    example_to_message,
)
from jobs.finetune import finetune_config
from whisperseg.segment import Segment
from whisperseg.training import TrainingExample


def test_shared_audio_comes_back_exactly_and_once_per_content(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    compact = rng.integers(-32768, 32767, 48000, dtype=np.int16)
    floats = rng.normal(0, 0.3, 48000).astype(np.float32)
    names = [shared_audio.share(tmp_path, a, 32000) for a in (compact, floats, compact.copy())]
    assert names[0].endswith(".flac") and names[1].endswith(".wav") and names[2] == names[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[:2])  # no temporaries
    for name, original in zip(names, (compact, floats), strict=False):
        samples, sr = shared_audio.load(tmp_path, name)
        assert sr == 32000 and samples.dtype == original.dtype
        assert np.array_equal(samples, original)
    assert shared_audio.share(tmp_path, compact, 16000) != names[0]  # the rate is content too


def test_a_finetuning_message_is_json_and_gives_the_same_clips_and_settings(
    tmp_path: Path,
) -> None:
    audio = np.random.default_rng(1).normal(0, 0.1, 16000).astype(np.float32)
    example = TrainingExample(audio, 16000, (Segment(0.1, 0.2, "A", 1.0),), 0.0025, 500.0)
    config = replace(finetune_config(30), views=((16000, 40), (32000, 80)))
    message = json.loads(
        json.dumps(
            {"example": example_to_message(tmp_path, example), "config": config_to_message(config)}
        )
    )
    back = example_from_message(tmp_path, message["example"])
    assert np.array_equal(back.audio, audio) and back.sr == 16000
    assert (back.segments, back.spec_time_step, back.min_frequency) == (
        example.segments,
        0.0025,
        500.0,
    )
    assert config_from_message(message["config"]) == config
