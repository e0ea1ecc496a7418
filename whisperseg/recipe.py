"""Reproducible training runs described by a JSON recipe (the shipped model is one).

A recipe names the starting weights, the annotated data and its fixed split, and
the training choices; running it writes a model folder plus a summary of what was
done, so anyone can rebuild the shipped model and compare.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import librosa

from whisperseg.datasets import find_recordings, load_recording, split_recordings
from whisperseg.initialize import from_whisper
from whisperseg.model import WhisperSegModel
from whisperseg.segment import Segment
from whisperseg.training import TrainingConfig, TrainingExample, TrainingProgress, finetune

BUNDLED_TINY_EN = "bundled:tiny.en"


@dataclass(frozen=True)
class Recipe:
    """What to train from, on what, and how. Paths are relative to the recipe file."""

    initial_model: str
    data_dir: str
    training: TrainingConfig
    cluster: str | None = None
    segmentation_defaults: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Recipe:
        values = json.loads(Path(path).read_text())
        values["training"] = TrainingConfig(**values.get("training", {}))
        values["data_dir"] = str((Path(path).parent / values["data_dir"]).resolve())
        return cls(**values)


def example_from_recording(wav_path: Path, cluster: str | None) -> TrainingExample:
    """A training clip at its species' rate, labels optionally merged into one cluster."""
    recording = load_recording(wav_path)
    audio = recording.audio
    if recording.sr != recording.species_sr:
        audio = librosa.resample(audio, orig_sr=recording.sr, target_sr=recording.species_sr)
    segments = tuple(Segment(s.onset, s.offset, cluster or s.cluster) for s in recording.segments)
    return TrainingExample(
        audio, recording.species_sr, segments, recording.spec_time_step, recording.min_frequency
    )


def initial_model(spec: str) -> WhisperSegModel:
    """``bundled:tiny.en`` converts the bundled Whisper weights; anything else is a folder."""
    if spec != BUNDLED_TINY_EN:
        return WhisperSegModel.load(spec, device="cpu")
    from whisperseg.conversion import bundled_tiny_en_dir, convert_ctranslate2_whisper

    with tempfile.TemporaryDirectory() as scratch:
        whisper_dir = convert_ctranslate2_whisper(bundled_tiny_en_dir(), Path(scratch) / "tiny.en")
        return from_whisper(whisper_dir)


def run_recipe(
    recipe: Recipe,
    out_dir: Path,
    progress: Callable[[TrainingProgress], None] | None = None,
) -> dict:
    """Train as the recipe says, save the model to ``out_dir``; returns the run's summary."""
    train_files, held_out = split_recordings(find_recordings(recipe.data_dir))
    if not train_files:
        raise FileNotFoundError(f"no annotated recordings under {recipe.data_dir}")
    examples = [example_from_recording(p, recipe.cluster) for p in train_files]
    model = initial_model(recipe.initial_model)
    model.default_segmentation_config = dict(recipe.segmentation_defaults)
    started = time.monotonic()
    losses = finetune(model, examples, recipe.training, progress=progress)
    summary = {
        "recipe": {**asdict(recipe), "data_dir": Path(recipe.data_dir).name},
        "train_files": [p.name for p in train_files],
        "held_out_files": [p.name for p in held_out],
        "train_seconds_of_audio": round(sum(e.duration for e in examples), 1),
        "wall_time_s": round(time.monotonic() - started, 1),
        "final_loss_mean_last_50": sum(losses[-50:]) / len(losses[-50:]),
    }
    model.save(out_dir)
    (out_dir / "training_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
