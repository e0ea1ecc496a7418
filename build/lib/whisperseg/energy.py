"""A classical energy-threshold segmenter: the baseline any learned model must beat.

It needs no training, so it also gives a first segmentation for new species
and a sanity check for the scoring code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import uniform_filter1d

from whisperseg.segment import Segment


@dataclass(frozen=True, slots=True)
class EnergyParams:
    """Settings of :func:`energy_segments`; times in seconds, levels in dB.

    Defaults were chosen on the training split of the shared recordings (zebra
    finch adults and juveniles, a canary), not on one file, and are stated in
    physical units so that they carry over across sample rates.

    - ``min_frequency``/``max_frequency``: band whose power counts (Hz);
      300 Hz drops handling noise and mains hum; None means up to Nyquist.
    - ``frame_length``/``hop``: STFT window and step; 1 ms steps resolve
      boundaries well below the 10 ms scoring tolerance.
    - ``smoothing``: moving-average length applied to the dB curve.
    - ``noise_percentile``: the noise floor is this percentile of the curve;
      kept below the share of silence in song-dense files.
    - ``spread_percentile``: the noise spread is the floor minus this
      percentile; it measures how much the noise itself flickers (0.5-4 dB in
      the shared recordings, more in narrow bands).
    - ``onset_db``/``offset_db`` and ``onset_spreads``/``offset_spreads``:
      hysteresis thresholds above the floor, each the larger of a fixed level
      and a multiple of the spread, so that noisy files are not cut into
      noise-driven fragments. A segment starts where the curve first exceeds
      the onset threshold and ends where it falls back below the offset one;
      annotators mark onsets at the steep rise but offsets late in the decay,
      hence the asymmetry.
    - ``min_gap``: runs separated by less than this are merged.
    - ``min_length``: shorter segments (after merging) are dropped.
    """

    min_frequency: float = 300.0
    max_frequency: float | None = None
    frame_length: float = 0.008
    hop: float = 0.001
    smoothing: float = 0.002
    noise_percentile: float = 20.0
    spread_percentile: float = 5.0
    onset_db: float = 12.0
    offset_db: float = 1.0
    onset_spreads: float = 6.0
    offset_spreads: float = 2.0
    min_gap: float = 0.005
    min_length: float = 0.01

    @classmethod
    def with_floor(cls, min_frequency: float | None) -> EnergyParams:
        """Defaults with the band floor raised to ``min_frequency``, never lowered: below
        the default, mains hum and handling noise would count as vocal energy."""
        return cls(min_frequency=max(cls().min_frequency, min_frequency or 0.0))


# Frames per FFT block: bounds memory on long recordings at any sample rate.
_BLOCK_FRAMES = 4096


def band_energy_db(audio: np.ndarray, sr: int, params: EnergyParams) -> tuple[np.ndarray, float]:
    """Smoothed band power in dB per frame, and the frame step in seconds.

    Frame i is centred at ``i * step``. The step is a whole number of samples,
    so it can differ slightly from ``params.hop`` (44 samples at 44.1 kHz);
    times must use the returned step, or they drift over the recording.
    """
    win = max(2, round(params.frame_length * sr))
    hop = max(1, round(params.hop * sr))
    signal = np.asarray(audio, dtype=np.float32)
    num_frames = len(signal) // hop + 1
    padded = np.pad(signal, (win // 2, win), mode="constant")
    frames = sliding_window_view(padded, win)[::hop][:num_frames]

    freqs = np.fft.rfftfreq(win, d=1.0 / sr)
    high = sr / 2 if params.max_frequency is None else params.max_frequency
    band = (freqs >= params.min_frequency) & (freqs <= high)
    window = np.hanning(win).astype(np.float32)
    power = np.concatenate(
        [
            _band_power(frames[i : i + _BLOCK_FRAMES] * window, band)
            for i in range(0, num_frames, _BLOCK_FRAMES)
        ]
    )
    db = 10.0 * np.log10(power + np.finfo(np.float32).tiny)
    step = hop / sr
    return uniform_filter1d(db, size=max(1, round(params.smoothing / step)), mode="nearest"), step


def _band_power(windowed: np.ndarray, band: np.ndarray) -> np.ndarray:
    return (np.abs(np.fft.rfft(windowed, axis=1)[:, band]) ** 2).sum(axis=1)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) indices of the True runs of ``mask``."""
    edges = np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def energy_segments(
    audio: np.ndarray,
    sr: int,
    params: EnergyParams = EnergyParams(),
    cluster: str = "vocal",
) -> list[Segment]:
    """Segment ``audio`` where band energy rises well above the recording's noise floor."""
    if len(audio) == 0:
        return []
    db, step = band_energy_db(audio, sr, params)
    floor, low = np.percentile(db, [params.noise_percentile, params.spread_percentile])
    spread = floor - low
    # Hysteresis: a segment starts where the curve rises above the onset
    # threshold and lasts until it falls below the (lower) offset threshold.
    start, end = _runs(db > floor + max(params.offset_db, params.offset_spreads * spread))
    loud = np.flatnonzero(db >= floor + max(params.onset_db, params.onset_spreads * spread))
    # First loud frame at or after each run's start (len(db) when none); the run
    # is a segment only if that frame lies inside it.
    first_loud = np.r_[loud, len(db)][np.searchsorted(loud, start)]
    strong = first_loud < end
    start, end = first_loud[strong], end[strong]
    if not len(start):
        return []

    # Merge runs separated by short gaps, then drop what is still too short.
    first = np.r_[True, (start[1:] - end[:-1]) * step >= params.min_gap]
    last = np.r_[first[1:], True]
    # A threshold crossing lies half a step before the first / after the last frame above it.
    onsets = np.maximum((start[first] - 0.5) * step, 0.0)
    offsets = np.minimum((end[last] - 0.5) * step, len(audio) / sr)
    long_enough = offsets - onsets >= params.min_length
    return [
        Segment(float(on), float(off), cluster)
        for on, off in zip(onsets[long_enough], offsets[long_enough], strict=True)
    ]
