"""The shipped recipe: which recordings it trains on, and how it shows them to the model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import PROJECT

from whisperseg.datasets import held_out_group
from whisperseg.initialize import random_tiny
from whisperseg.recipe import Recipe, as_served, example_from_recording
from whisperseg.segment import Segment
from whisperseg.training import (
    TrainingConfig,
    TrainingExample,
    _CropSampler,
    _mix_background,
    background_stretches,
)
from whisperseg.view import known_views

SHIPPED_RECIPE = PROJECT / "configs" / "whisperseg-tiny.json"


@pytest.fixture
def recipe(shared_data: Path) -> Recipe:
    return replace(Recipe.load(SHIPPED_RECIPE), data_dir=str(shared_data))


def test_the_recipe_caps_bengalese_finch_and_keeps_held_out_files_apart(recipe: Recipe) -> None:
    train, held_out = recipe.training_files()
    species = {recipe.species_of(p) for p in train}
    assert species == {"zebra_finch", "canary", "bengalese_finch", "mouse"}
    bengalese = [p for p in train if recipe.species_of(p) == "bengalese_finch"]
    seconds = sum(sf.info(p).duration for p in bengalese)
    cap = recipe.max_train_seconds["bengalese_finch"]
    assert cap <= seconds < cap + max(sf.info(p).duration for p in bengalese)
    assert not any(held_out_group(p) for p in train)
    assert {held_out_group(p) for p in held_out} >= {"bengalese_bird0_100-134", "mouse_rec8"}


def test_leaving_a_species_out_removes_it_from_training_only(recipe: Recipe) -> None:
    without = replace(recipe, exclude_species=("mouse",))
    train, held_out = without.training_files()
    assert "mouse" not in {without.species_of(p) for p in train}
    assert held_out == recipe.training_files()[1]


def test_mouse_ultrasound_is_trained_as_get_labels_shows_it(recipe: Recipe) -> None:
    views = known_views(recipe.segmentation_defaults)
    mouse = next(p for p in recipe.training_files()[0] if recipe.species_of(p) == "mouse")
    native = example_from_recording(mouse, "vocal")
    served = as_served(native, views)
    assert native.sr == 250000 and served.sr == 32000  # declared at the model's rate
    stretch = 250000 / 32000
    assert served.segments[0].onset == pytest.approx(native.segments[0].onset * stretch)
    assert served.min_frequency == pytest.approx(native.min_frequency / stretch)
    median_columns = np.median([s.duration for s in served.segments]) / served.spec_time_step
    assert 15 <= median_columns <= 60.5  # lengths the model knows (up to hop rounding)
    finch = next(p for p in recipe.training_files()[0] if recipe.species_of(p) == "zebra_finch")
    example = example_from_recording(finch, "vocal")
    assert as_served(example, views) is example  # 32 kHz birds are shown as they are


def test_crops_are_drawn_in_proportion_to_length_times_weight() -> None:
    model = random_tiny(d_model=32)
    audio = np.zeros(32000 * 5, dtype=np.float32)
    examples = [TrainingExample(audio, 32000, (), 0.0025, weight=w) for w in (1.0, 3.0)]
    sampler = _CropSampler(examples, model, TrainingConfig())
    assert sampler.weights == pytest.approx([0.25, 0.75])


def test_pitch_band_and_room_augmentation_keeps_labels_on_the_call() -> None:
    """Declared-rate (pitch) shifts move times into declared seconds; the labels must
    still cover the columns where the call's energy is."""
    sr, model = 32000, random_tiny(d_model=32)
    rng = np.random.default_rng(1)
    audio = rng.normal(0, 0.001, sr * 3).astype(np.float32)
    t = np.arange(int(0.1 * sr)) / sr
    audio[sr : sr + t.size] += 0.5 * np.sin(2 * np.pi * 4000 * t)
    example = TrainingExample(audio, sr, (Segment(1.0, 1.1, "call"),), 0.0025)
    config = TrainingConfig(augment=True, augment_species=True, seed=3)
    sampler = _CropSampler([example], model, config)
    checked = 0
    for _ in range(40):
        features, ids = sampler.crop()
        times = [model.tokenizer.decode([i]) for i in ids]
        marks = [int(x[2:-2]) for x in times if x.startswith("<|") and x[2:-2].isdigit()]
        if len(marks) != 2 or marks[1] - marks[0] < 10:
            continue  # no call in this crop, or only its edge
        loudness = features.max(dim=0).values.numpy()
        loudest = int(np.argmax(loudness)) // 2  # time tokens span two columns
        assert marks[0] - 2 <= loudest <= marks[1] + 2, (marks, loudest)
        checked += 1
    assert checked >= 5


def test_backgrounds_come_from_between_the_calls_and_keep_their_pitch_across_rates() -> None:
    """Another recording's background is the time between its calls (never a call), mixed
    quieter than the crop and resampled, so a 1 kHz hum stays at 1 kHz at any rate."""
    sr = 16000
    t = np.arange(sr * 3) / sr
    hum = (0.01 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    calls = (Segment(0.5, 0.8, "call"), Segment(0.7, 1.0, "call"), Segment(2.9, 3.0, "call"))
    recording = hum.copy()
    for s in calls:
        recording[round(s.onset * sr) : round(s.offset * sr)] = 1.0
    stretches = background_stretches([TrainingExample(recording, sr, calls, 0.0025)])
    assert [len(a) / rate for a, rate in stretches] == pytest.approx([0.5, 1.9])
    assert max(float(np.abs(a).max()) for a, _ in stretches) < 0.02  # no call leaked in

    crop = np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32)
    mixed = _mix_background(crop, 32000, stretches[0], np.random.default_rng(1))
    added = mixed - crop
    below_db = 20 * np.log10(np.std(crop) / np.std(added))
    assert 5 <= below_db <= 25
    peak_hz = np.argmax(np.abs(np.fft.rfft(added))) * 32000 / added.size
    assert peak_hz == pytest.approx(1000, abs=5)
