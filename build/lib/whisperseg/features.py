"""Whisper-style log-mel features of fixed-size windows, at the species' own sample rate.

Each window is normalised on its own (Whisper's log10, floor at max - 8, then
(x + 4) / 4), so a window's features depend only on its own samples: training
crops and inference windows see exactly the same transform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import librosa
import numpy as np
import torch

N_MELS = 80


def n_fft_for_rate(sr: int) -> int:
    """FFT size by sample rate, the table WhisperSeg and the frontend share."""
    for limit, n_fft in ((32_000, 512), (80_000, 1024), (150_000, 2048), (300_000, 4096)):
        if sr <= limit:
            return n_fft
    return 8192


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """How audio at ``sr`` becomes one ``N_MELS x total_spec_columns`` model input."""

    sr: int
    spec_time_step: float
    min_frequency: float = 0.0
    total_spec_columns: int = 1000

    @property
    def hop_length(self) -> int:
        return max(1, round(self.spec_time_step * self.sr))

    @property
    def n_fft(self) -> int:
        return n_fft_for_rate(self.sr)

    @property
    def window_samples(self) -> int:
        return self.hop_length * self.total_spec_columns

    @property
    def fft_widening(self) -> float:
        """Seconds by which the FFT smears an onset or offset (n_fft / 2 / sr)."""
        return self.n_fft / 2 / self.sr

    @property
    def seconds_per_time_token(self) -> float:
        """The encoder halves the time axis, so one time token spans two columns."""
        return 2 * self.hop_length / self.sr


@lru_cache(maxsize=32)
def mel_filterbank(sr: int, n_fft: int, min_frequency: float) -> torch.Tensor:
    """Slaney mel filters from ``min_frequency`` to sr/2 (cached: constant per config)."""
    fmin = min(max(0.0, float(min_frequency)), sr / 2 * 0.99)
    filters = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=N_MELS, fmin=fmin, fmax=sr / 2)
    return torch.from_numpy(filters.astype(np.float32))


@lru_cache(maxsize=8)
def _hann(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft)


def _padded_slices(audio: np.ndarray, starts: Sequence[int], length: int) -> np.ndarray:
    """Rows ``audio[s : s + length]`` for each start, zeros outside the recording."""
    out = np.zeros((len(starts), length), dtype=np.float32)
    for row, start in enumerate(starts):
        lo, hi = max(start, 0), min(start + length, len(audio))
        if hi > lo:
            out[row, lo - start : hi - start] = audio[lo:hi]
    return out


def window_features(
    audio: np.ndarray, starts: Sequence[int], config: FeatureConfig
) -> torch.Tensor:
    """Features of the windows beginning at sample ``starts`` (may be negative: zero padding).

    Column ``c`` of a window starting at ``s`` is the STFT frame centred on sample
    ``s + c * hop``. Columns centred past the end of the recording take the
    window's minimum value, as WhisperSeg fills short windows.
    Returns a float32 tensor of shape (len(starts), N_MELS, total_spec_columns).
    """
    hop, n_fft, columns = config.hop_length, config.n_fft, config.total_spec_columns
    half = n_fft // 2
    frames = _padded_slices(audio, [s - half for s in starts], (columns - 1) * hop + n_fft)
    spec = torch.stft(
        torch.from_numpy(frames),
        n_fft=n_fft,
        hop_length=hop,
        window=_hann(n_fft),
        center=False,
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()
    mel = torch.matmul(mel_filterbank(config.sr, n_fft, config.min_frequency), power)
    log_spec = torch.clamp(mel, min=1e-10).log10()
    peak = log_spec.amax(dim=(1, 2), keepdim=True)
    log_spec = (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
    for row, start in enumerate(starts):
        valid = -(-(len(audio) - start) // hop) if start < len(audio) else 0
        if valid < columns:
            log_spec[row, :, max(valid, 0) :] = log_spec[row].min()
    return log_spec
