"""Segmentation settings for a recording of an unnamed species, read off the audio.

A model lists settings per species it was trained on (the shipped one: 32 kHz, 2.5 ms
or 1 ms columns). Used as they are on anything else, they fail quietly: a 16 kHz
mammal resampled to 32 kHz fills half the mel bands with nothing and its 250 ms calls
run 100 columns long, so the shipped model finds no call at all. Instead, the energy
baseline (cheap, no model) finds the louder calls, their median length picks the
column width (``view.choose_view``: about 30 columns a call), and the rate decides how
the audio is shown:

- from the model's rate up to ``RESAMPLE_UP_TO`` times it (birds at 44.1, 48, 96 kHz),
  the audio is resampled to the model's rate: pitch and tempo stay natural;
- below it (8-24 kHz mammals) or far above (ultrasound), the samples are declared to
  be at the model's rate, so the whole band is seen and nothing is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from whisperseg.energy import EnergyParams, energy_segments
from whisperseg.segmentation import SegmentationConfig
from whisperseg.view import choose_view, known_views

# Fewer energy calls than this say too little about call lengths: keep the defaults.
MIN_CALLS = 5
# Only the start of a long recording is scanned (energy: ~2 ms per second at 32 kHz,
# ~30 ms at 250 kHz, against 100 ms and more for the model itself).
SCAN_SECONDS = 300.0
# Recordings up to this many times the model's rate are resampled to it.
RESAMPLE_UP_TO = 3.0


@dataclass(frozen=True, slots=True)
class SettingsChoice:
    """The settings chosen and why, in words for the server log."""

    config: SegmentationConfig
    reason: str


def resampled_to_model_rate(sr: int, model_rate: int) -> bool:
    """Whether audio at ``sr`` is resampled to the model's rate (birds at 32-96 kHz) rather
    than declared to be at it (slower mammals, ultrasound)."""
    return model_rate <= sr <= RESAMPLE_UP_TO * model_rate


def coarsest(configs: Mapping[str, Mapping]) -> SegmentationConfig:
    """Of the listed species settings, the one with the widest columns (the cheapest)."""
    listed = [SegmentationConfig.from_dict(c) for c in configs.values()]
    return max(listed, key=lambda c: c.spec_time_step, default=SegmentationConfig())


def settings_for_recording(
    configs: Mapping[str, Mapping],
    audio: np.ndarray,
    sr: int,
    min_frequency: float | None = None,
) -> SettingsChoice:
    """Settings for ``audio`` (any numeric dtype) from a model's per-species ``configs``."""
    default = coarsest(configs)
    floor = min_frequency if min_frequency is not None else default.min_frequency
    default = replace(default, min_frequency=floor)
    # Energy thresholds sit above the recording's own noise floor: int16 needs no scaling.
    scanned = audio[: round(SCAN_SECONDS * sr)]
    calls = energy_segments(scanned, sr, EnergyParams.with_floor(floor), "call")
    durations = [s.duration for s in calls]
    if len(durations) < MIN_CALLS:
        reason = f"{len(durations)} calls found by energy, too few to judge: model defaults"
        return SettingsChoice(default, reason)
    model_rate = default.sr or sr
    views = known_views(configs)
    resample = resampled_to_model_rate(sr, model_rate)
    view = choose_view(model_rate if resample else sr, durations, views)
    config = replace(
        _listed_with_step(configs, view.spec_time_step) or default,
        sr=model_rate if resample else sr,
        feature_rate=None if resample else view.feature_rate,
        spec_time_step=view.spec_time_step,
        min_frequency=floor,
    )
    how = "resampled to" if resample else "declared as"
    reason = (
        f"{len(durations)} calls found by energy, median {np.median(durations) * 1000:.0f} ms: "
        f"{sr} Hz {how} {view.feature_rate} Hz, {view.spec_time_step * 1000:.3g} ms columns"
    )
    return SettingsChoice(config, reason)


def _listed_with_step(configs: Mapping[str, Mapping], step: float) -> SegmentationConfig | None:
    """A listed species' settings with columns ``step`` wide (its eps, lengths, trials)."""
    for values in configs.values():
        config = SegmentationConfig.from_dict(values)
        if abs(config.spec_time_step - step) < 1e-9:
            return config
    return None
