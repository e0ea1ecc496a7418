"""Settings for a recording of an unnamed species come from the calls in the audio."""

from __future__ import annotations

import numpy as np
import pytest

from whisperseg.autoconfig import settings_for_recording

SHIPPED = {  # as the shipped model's config.json lists them
    "canary": {"sr": 32000, "spec_time_step": 0.001, "eps": 0.02, "num_trials": 3},
    "zebra_finch": {
        "sr": 32000,
        "spec_time_step": 0.0025,
        "min_segment_length": 0.01,
        "eps": 0.02,
        "num_trials": 3,
    },
}


def _calls(sr: int, length: float, frequency: float, count: int = 12) -> np.ndarray:
    """``count`` tone calls of ``length`` s, one every 3 lengths (plus 0.2 s), in faint noise."""
    spacing = 3 * length + 0.2
    t = np.arange(round(count * spacing * sr)) / sr
    audio = np.random.default_rng(0).normal(0, 1e-3, t.size)
    inside = (t % spacing > 0.1) & (t % spacing < 0.1 + length)
    audio += 0.3 * np.sin(2 * np.pi * frequency * t) * inside
    return audio.astype(np.float32)


def test_a_16_khz_mammal_is_declared_at_the_models_rate_with_wider_columns() -> None:
    choice = settings_for_recording(SHIPPED, _calls(16000, 0.25, 800), 16000)
    config = choice.config
    assert (config.sr, config.feature_rate) == (16000, 32000)
    assert config.spec_time_step == pytest.approx(0.005)  # 50 columns a call, not 100
    assert "declared as 32000 Hz" in choice.reason


def test_a_48_khz_bird_is_resampled_and_keeps_the_species_settings() -> None:
    config = settings_for_recording(SHIPPED, _calls(48000, 0.08, 3000), 48000).config
    assert (config.sr, config.feature_rate) == (32000, None)
    assert config.spec_time_step == 0.0025 and config.min_segment_length == 0.01
    short = settings_for_recording(SHIPPED, _calls(48000, 0.025, 3000), 48000).config
    assert short.spec_time_step == 0.001  # canary-length syllables: the 1 ms columns


def test_mouse_ultrasound_gets_columns_of_its_own_and_the_band_floor_asked_for() -> None:
    audio = _calls(250000, 0.045, 70000)
    config = settings_for_recording(SHIPPED, audio, 250000, min_frequency=35000.0).config
    assert (config.sr, config.feature_rate) == (250000, 32000)
    assert 45 <= 0.045 / config.spec_time_step <= 65  # about 60 columns a call, not 140
    assert config.min_frequency == 35000.0


def test_int16_samples_choose_as_float_ones_do() -> None:
    audio = _calls(16000, 0.25, 800)
    as_int16 = (audio * 32767).astype(np.int16)
    assert (
        settings_for_recording(SHIPPED, as_int16, 16000).config
        == settings_for_recording(SHIPPED, audio, 16000).config
    )


def test_without_calls_the_models_defaults_stay() -> None:
    noise = np.random.default_rng(1).normal(0, 1e-3, 16000 * 5).astype(np.float32)
    choice = settings_for_recording(SHIPPED, noise, 16000)
    assert (choice.config.sr, choice.config.spec_time_step) == (32000, 0.0025)
    assert "too few" in choice.reason
