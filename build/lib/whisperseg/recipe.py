"""Reproducible training runs described by a JSON recipe (the shipped model is one).

A recipe names the starting weights, the annotated data and its fixed split, and
the training choices; running it writes a model folder plus a summary of what was
done, so anyone can rebuild the shipped model and compare.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import librosa
import soundfile as sf

from whisperseg.autoconfig import resampled_to_model_rate
from whisperseg.datasets import find_recordings, load_recording, split_recordings
from whisperseg.initialize import from_whisper
from whisperseg.model import WhisperSegModel
from whisperseg.segment import Segment
from whisperseg.training import TrainingConfig, TrainingExample, TrainingProgress, finetune
from whisperseg.view import as_viewed, choose_view, known_views

BUNDLED_PREFIX = "bundled:"  # then a name in conversion.BUNDLED_WHISPER, e.g. bundled:base
BUNDLED_TINY_EN = f"{BUNDLED_PREFIX}tiny.en"


@dataclass(frozen=True)
class Recipe:
    """What to train from, on what, and how. Paths are relative to the recipe file."""

    initial_model: str
    data_dir: str
    training: TrainingConfig
    cluster: str | None = None
    segmentation_defaults: dict[str, dict] = field(default_factory=dict)
    # Per species: at most this many seconds of training audio (files in name order),
    # so 23 minutes of one Bengalese finch do not drown three minutes of zebra finch.
    max_train_seconds: dict[str, float] = field(default_factory=dict)
    # Per species: how much more (or less) often its crops are drawn than its length says.
    species_weights: dict[str, float] = field(default_factory=dict)
    # Species left out of training (leave-one-out runs); their held-out files stay apart.
    exclude_species: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path) -> Recipe:
        values = json.loads(Path(path).read_text())
        values["training"] = TrainingConfig(**values.get("training", {}))
        values["data_dir"] = str((Path(path).parent / values["data_dir"]).resolve())
        if not values["initial_model"].startswith(BUNDLED_PREFIX):
            values["initial_model"] = str((Path(path).parent / values["initial_model"]).resolve())
        values["exclude_species"] = tuple(values.get("exclude_species", ()))
        return cls(**values)

    def training_files(self) -> tuple[list[Path], list[Path]]:
        """(train, held out): the fixed split, less excluded species, capped per species."""
        train, held_out = split_recordings(find_recordings(self.data_dir))
        kept, seconds = [], defaultdict(float)
        for path in train:
            species = self.species_of(path)
            cap = self.max_train_seconds.get(species, math.inf)
            if species in self.exclude_species or seconds[species] >= cap:
                continue
            seconds[species] += sf.info(path).duration
            kept.append(path)
        return kept, held_out

    def species_of(self, path: Path) -> str:
        """The top folder under ``data_dir`` (zebra_finch, canary, bengalese_finch, mouse)."""
        return Path(path).relative_to(self.data_dir).parts[0]


def example_from_recording(
    wav_path: Path, cluster: str | None, weight: float = 1.0
) -> TrainingExample:
    """A training clip at its species' rate, labels optionally merged into one cluster."""
    recording = load_recording(wav_path)
    audio = recording.audio
    if recording.sr != recording.species_sr:
        audio = librosa.resample(audio, orig_sr=recording.sr, target_sr=recording.species_sr)
    segments = tuple(Segment(s.onset, s.offset, cluster or s.cluster) for s in recording.segments)
    return TrainingExample(
        audio,
        recording.species_sr,
        segments,
        recording.spec_time_step,
        recording.min_frequency,
        weight,
    )


def as_served(example: TrainingExample, views: list[tuple[int, int]]) -> TrainingExample:
    """The clip as ``/get-labels`` without a species shows it (``whisperseg.autoconfig``):
    rates the server resamples to the model's as they are, others (mouse ultrasound at
    250 kHz) declared at the model's rate with columns fitted to the calls."""
    model_rate = max(rate for rate, _ in views)
    if resampled_to_model_rate(example.sr, model_rate) or not example.segments:
        return example
    view = choose_view(example.sr, [s.duration for s in example.segments], views)
    return as_viewed(example, view)


def initial_model(spec: str) -> WhisperSegModel:
    """``bundled:NAME`` converts bundled Whisper weights; anything else is a folder."""
    if not spec.startswith(BUNDLED_PREFIX):
        if not (Path(spec) / "config.json").is_file():
            raise FileNotFoundError(
                f"initial model {spec} not found: train the recipe that makes it first "
                "(the shipped model's card gives the order)"
            )
        return WhisperSegModel.load(spec, device="cpu")
    from whisperseg.conversion import bundled_whisper_dir, convert_ctranslate2_whisper

    name = spec.removeprefix(BUNDLED_PREFIX)
    with tempfile.TemporaryDirectory() as scratch:
        ct2_dir = bundled_whisper_dir(name, Path(scratch))
        return from_whisper(convert_ctranslate2_whisper(ct2_dir, Path(scratch) / name))


def run_recipe(
    recipe: Recipe,
    out_dir: Path,
    progress: Callable[[TrainingProgress], None] | None = None,
) -> dict:
    """Train as the recipe says, save the model to ``out_dir``; returns the run's summary."""
    model = initial_model(recipe.initial_model)  # first: a missing start fails at once
    train_files, held_out = recipe.training_files()
    if not train_files:
        raise FileNotFoundError(f"no annotated recordings under {recipe.data_dir}")
    views = known_views(recipe.segmentation_defaults)
    examples = [
        as_served(
            example_from_recording(
                p, recipe.cluster, recipe.species_weights.get(recipe.species_of(p), 1.0)
            ),
            views,
        )
        for p in train_files
    ]
    model.default_segmentation_config = dict(recipe.segmentation_defaults)
    started = time.monotonic()
    losses = finetune(model, examples, recipe.training, progress=progress)
    summary = {
        "recipe": {
            **asdict(recipe),
            "data_dir": Path(recipe.data_dir).name,
            "initial_model": Path(recipe.initial_model).name,
        },
        "train_files": [p.name for p in train_files],
        "held_out_files": [p.name for p in held_out],
        "train_seconds_of_audio": round(sum(sf.info(p).duration for p in train_files), 1),
        "wall_time_s": round(time.monotonic() - started, 1),
        "final_loss_mean_last_50": sum(losses[-50:]) / len(losses[-50:]),
    }
    model.save(out_dir)
    (out_dir / "training_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
