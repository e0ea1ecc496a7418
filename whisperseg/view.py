"""How a new species is shown to a model: at a rate, a speed and a time step it knows.

A WhisperSeg model only ever sees spectrogram columns. The shipped one learned
32 kHz audio with hops of 80 and 32 samples (2.5 ms, 1 ms), a 512-sample FFT, and
syllables 20-40 columns long. A time step derived from a new species' labels alone
(1/25 of the median segment) gives hops and FFT sizes it never saw, and finetuning on
seconds of labels then has to relearn what a segment looks like. Instead, the samples
are declared to be at a rate the model knows (played faster or slower, as bat
detectors play ultrasound slowed down: nothing is lost, the whole band is kept) and
the hop is the known one that makes the median labelled segment closest to
``COLUMNS_PER_SEGMENT`` columns. Calls far longer than any the model knows (mouse
ultrasound: 11,000 samples at 250 kHz, 140 columns at the coarsest known hop) get a
hop of their own instead, as near the known ones as keeps them within
``MAX_COLUMN_RATIO`` of that length (measured: mouse calls shown 30 columns long are
learned worse than at 50-70, where a 16 kHz mammal's calls are learned best).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import librosa
import numpy as np

from whisperseg.features import n_fft_for_rate
from whisperseg.segmentation import SegmentationConfig, scale_times
from whisperseg.training import TrainingExample

# Median segment length, in spectrogram columns, of the species the shipped model knows
# (zebra finch ~37 at 2.5 ms, canary ~24 at 1 ms).
COLUMNS_PER_SEGMENT = 30.0
# Beyond this factor from COLUMNS_PER_SEGMENT, the hop is set from the labels instead.
MAX_COLUMN_RATIO = 2.0
# What the shipped model was trained on, used when a model lists no species settings.
FALLBACK_VIEWS = ((32000, 32), (32000, 80))


@dataclass(frozen=True, slots=True)
class View:
    """Audio at ``sr`` declared as ``feature_rate``, ``hop`` samples per column."""

    sr: int
    feature_rate: int
    hop: int

    @property
    def spec_time_step(self) -> float:
        """Seconds of the recording per column."""
        return self.hop / self.sr

    def segmentation(self, min_frequency: float = 0.0, **settings: float) -> SegmentationConfig:
        """The segmentation settings that show recordings to the model this way."""
        return SegmentationConfig(
            sr=self.sr,
            min_frequency=min_frequency,
            spec_time_step=self.spec_time_step,
            feature_rate=self.feature_rate,
            **settings,
        )


def known_views(default_segmentation_config: Mapping[str, Mapping]) -> list[tuple[int, int]]:
    """(declared rate, hop) pairs a model was trained with, from its per-species settings."""
    views = set()
    for values in default_segmentation_config.values():
        sr, step = values.get("sr"), values.get("spec_time_step")
        if sr and step:
            hop = max(1, round(float(step) * int(sr)))
            views.add((int(values.get("feature_rate") or sr), hop))
    return sorted(views) or list(FALLBACK_VIEWS)


def choose_view(
    sr: int,
    durations: Sequence[float],
    views: Sequence[tuple[int, int]] = FALLBACK_VIEWS,
    columns: float = COLUMNS_PER_SEGMENT,
) -> View:
    """The known view whose hop makes the median labelled segment closest to ``columns``.

    Ties go to the declared rate nearest ``sr`` (least change of speed and pitch). When
    even the closest is more than ``MAX_COLUMN_RATIO`` off, its declared rate is kept
    and the hop moved just enough to bring the median within that ratio (at most one
    FFT long, so no sample goes unseen).
    """
    if len(durations) == 0:
        raise ValueError("need at least one labelled segment to choose a view")
    median_samples = float(np.median(durations)) * sr

    def distance(view: tuple[int, int]) -> tuple[float, float]:
        rate, hop = view
        return abs(math.log(median_samples / hop / columns)), abs(math.log(rate / sr))

    rate, hop = min(views, key=distance)
    shown = median_samples / hop
    fitting = min(max(shown, columns / MAX_COLUMN_RATIO), columns * MAX_COLUMN_RATIO)
    if fitting != shown:
        hop = min(max(1, round(median_samples / fitting)), n_fft_for_rate(rate))
    return View(sr, rate, hop)


def as_viewed(example: TrainingExample, view: View) -> TrainingExample:
    """``example`` as the model sees it through ``view``: declared rate, stretched times."""
    audio = example.audio
    if example.sr != view.sr:
        audio = librosa.resample(audio, orig_sr=example.sr, target_sr=view.sr, res_type="soxr_hq")
    stretch = view.sr / view.feature_rate
    return TrainingExample(
        audio=np.asarray(audio, dtype=np.float32),
        sr=view.feature_rate,
        segments=tuple(scale_times(example.segments, stretch)),
        spec_time_step=view.hop / view.feature_rate,
        min_frequency=example.min_frequency / stretch,
        weight=example.weight,
        source=example.source,
    )
