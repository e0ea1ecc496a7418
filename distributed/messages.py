"""What a finetuning task's message carries, as JSON: the clips (audio by reference to
``shared_audio``) and the job's training settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from distributed import shared_audio
from whisperseg.adaptation import AdaptationConfig
from whisperseg.segment import Segment
from whisperseg.training import TrainingConfig, TrainingExample


def example_to_message(folder: Path, example: TrainingExample) -> dict:
    return {
        "audio": shared_audio.share(folder, example.audio, example.sr),
        "segments": [dataclasses.astuple(s) for s in example.segments],
        "spec_time_step": example.spec_time_step,
        "min_frequency": example.min_frequency,
        "source": example.source,
    }


def example_from_message(folder: Path, message: dict) -> TrainingExample:
    audio, sr = shared_audio.load(folder, message["audio"])
    segments = tuple(Segment(*values) for values in message["segments"])
    return TrainingExample(
        audio,
        sr,
        segments,
        message["spec_time_step"],
        message["min_frequency"],
        source=message.get("source", ""),
    )


def config_to_message(config: AdaptationConfig) -> dict:
    return dataclasses.asdict(config)


def config_from_message(message: dict) -> AdaptationConfig:
    views = message.get("views")
    return AdaptationConfig(
        **{
            **message,
            "training": TrainingConfig(**message["training"]),
            "views": None if views is None else tuple(tuple(view) for view in views),
        }
    )
