"""Spectrogram images as the annotation frontend expects them; pure functions, notebook-friendly.

Both methods are an STFT power spectrum times a cached sparse filterbank of 300 triangular
bands: mel-spaced for ``log-mel``, geometric (``fmin * 2**(k / bins_per_octave)``) for
``constant-q``. Bands narrower than one FFT bin interpolate between neighbouring bins, so no
row is empty. Frames are gathered straight from the stored samples, so the cost depends on
``num_spec_columns * n_fft``, not on ``hop_length``: a whole-file overview is as cheap as a
close-up.

>>> config = resolve_config(32000, len(samples))
>>> db = compute_db(samples, 0, config)        # (300, 1000) dB, row 0 = lowest frequency
>>> jpeg = render_jpeg_base64(db, "viridis")
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import librosa
import numpy as np
import scipy.fft
import scipy.signal
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageEnhance
from scipy.sparse import csr_matrix

SPEC_ROWS = 300
DEFAULT_COLUMNS = 1000
METHODS = ("log-mel", "constant-q")
DEFAULT_CONSTANT_Q_FMIN = 50.0
DEFAULT_COLORMAP = "inferno"
COLORMAPS: dict[str, np.ndarray] = dict(np.load(Path(__file__).with_name("colormap_luts.npz")))
# Contrast normalisation: this percentile range of the dB values spans the colormap, so a few
# loud clicks or a silent stretch do not wash out the image.
LOW_PERCENTILE, HIGH_PERCENTILE = 2.0, 99.8
POWER_FLOOR = 1e-10  # -100 dB: digital silence
FRAME_CHUNK_ELEMENTS = 1 << 22  # bounds the temporary frame matrix to ~16 MB of float32
JPEG_QUALITY = 90


class SpecConfigError(ValueError):
    """Parameters that cannot describe a spectrogram (unknown method, min >= max ...)."""


@dataclass(frozen=True)
class SpecConfig:
    """The effective parameters of one spectrogram; echoed to clients as ``configurations``."""

    spec_cal_method: str
    n_fft: int
    bins_per_octave: int | None
    hop_length: int
    num_spec_columns: int
    sampling_rate: int
    min_frequency: float
    max_frequency: float


def default_n_fft(sampling_rate: float) -> int:
    """FFT size by sampling rate: about 16 ms windows for birds, shorter for ultrasound."""
    for max_rate, n_fft in ((32_000, 512), (80_000, 1024), (150_000, 2048), (300_000, 4096)):
        if sampling_rate <= max_rate:
            return n_fft
    return 8192


def min_bins_per_octave(fmin: float, fmax: float, rows: int = SPEC_ROWS) -> int:
    """Smallest integer b with ``fmin * 2**(rows / b) <= fmax`` (all rows fit below fmax)."""
    b = max(1, math.ceil(rows / math.log2(fmax / fmin)))
    if b > 1 and fmin * 2 ** (rows / (b - 1)) <= fmax:  # guard against float rounding
        b -= 1
    if fmin * 2 ** (rows / b) > fmax:
        b += 1
    return b


def resolve_config(
    sampling_rate: int,
    num_samples: int,
    *,
    spec_cal_method: str | None = None,
    n_fft: int | None = None,
    bins_per_octave: int | None = None,
    hop_length: int | None = None,
    num_spec_columns: int | None = None,
    min_frequency: float | None = None,
    max_frequency: float | None = None,
    max_columns: int | None = None,
    max_span_samples: int | None = None,
) -> SpecConfig:
    """Apply the API's defaults and clamping; ``num_samples`` is the length at ``sampling_rate``.

    None or out-of-range values mean "default"; see the HTTP contract for each rule.
    ``max_columns`` and ``max_span_samples`` (a server's limits) refuse work beyond them
    before anything is allocated.
    """
    if num_spec_columns is not None and max_columns is not None and num_spec_columns > max_columns:
        raise SpecConfigError(
            f"num_spec_columns {num_spec_columns} is more than the limit of {max_columns} "
            "(max_spec_columns)"
        )
    method = spec_cal_method or METHODS[0]
    if method not in METHODS:
        raise SpecConfigError(
            f"Unknown spec_cal_method {method!r}: use one of {', '.join(METHODS)}"
        )
    columns = num_spec_columns if num_spec_columns and num_spec_columns > 0 else DEFAULT_COLUMNS
    nyquist = sampling_rate / 2
    fmax = nyquist if not max_frequency or max_frequency <= 0 else min(max_frequency, nyquist)
    if method == "log-mel":
        fmin = 0.0 if min_frequency is None or min_frequency < 0 else float(min_frequency)
    else:
        fmin = DEFAULT_CONSTANT_Q_FMIN if not min_frequency or min_frequency <= 0 else min_frequency
    if fmin >= fmax:
        raise SpecConfigError(
            f"min_frequency ({fmin:g} Hz) must be below max_frequency ({fmax:g} Hz, at most "
            f"half the sampling rate of {sampling_rate} Hz)"
        )
    bpo = None
    if method == "constant-q":
        bpo = max(bins_per_octave or 0, min_bins_per_octave(fmin, fmax))
    hop = hop_length if hop_length and hop_length > 0 else max(1, num_samples // columns)
    if max_span_samples is not None and hop * columns > max_span_samples:
        raise SpecConfigError(
            f"hop_length * num_spec_columns = {hop * columns} samples is more than the limit of "
            f"{max_span_samples} (max_clip_samples)"
        )
    return SpecConfig(
        spec_cal_method=method,
        n_fft=n_fft if n_fft and n_fft > 0 else default_n_fft(sampling_rate),
        bins_per_octave=bpo,
        hop_length=hop,
        num_spec_columns=columns,
        sampling_rate=sampling_rate,
        min_frequency=float(fmin),
        max_frequency=float(fmax),
    )


def row_frequencies(config: SpecConfig) -> np.ndarray:
    """Centre frequency in Hz of each of the 300 rows, ascending (row 0 = image bottom)."""
    return _filterbank(*_filterbank_key(config))[1].copy()


def band_weights(config: SpecConfig) -> csr_matrix:
    """Sparse (300, n_fft // 2 + 1) weights from STFT power bins to rows; each row sums to 1."""
    return _filterbank(*_filterbank_key(config))[0].copy()


def compute_db(samples: np.ndarray, start: int, config: SpecConfig) -> np.ndarray:
    """Power in dB, shape (300, num_spec_columns), row 0 = lowest frequency.

    Column j is the frame centred on sample ``start + j * hop_length`` of ``samples`` (int16 or
    float in [-1, 1]); samples outside the array count as silence.
    """
    filterbank, _ = _filterbank(*_filterbank_key(config))
    n_fft, hop, columns = config.n_fft, config.hop_length, config.num_spec_columns
    window = _window(n_fft) * (1 / 32768 if samples.dtype == np.int16 else 1)
    power = np.empty((SPEC_ROWS, columns), dtype=np.float32)
    chunk = max(1, FRAME_CHUNK_ELEMENTS // n_fft)
    for first in range(0, columns, chunk):
        count = min(chunk, columns - first)
        frames = _windowed_frames(samples, start + first * hop - n_fft // 2, hop, count, window)
        spectrum = scipy.fft.rfft(frames, axis=1)
        magnitude2 = np.square(spectrum.real) + np.square(spectrum.imag)
        power[:, first : first + count] = filterbank @ magnitude2.T
    np.maximum(power, POWER_FLOOR, out=power)
    return 10 * np.log10(power)


def render_jpeg_base64(
    db: np.ndarray,
    color_map: str | None = DEFAULT_COLORMAP,
    brightness: float = 1.0,
    contrast: float = 1.0,
) -> str:
    """Base64 JPEG (no ``data:`` prefix) of a dB matrix: top row = highest frequency."""
    lut = COLORMAPS.get((color_map or "").lower(), COLORMAPS[DEFAULT_COLORMAP])
    image = Image.fromarray(np.ascontiguousarray(colormap_indices(db)[::-1]))
    image.putpalette(lut.tobytes())  # palette lookup in C: much faster than indexing the LUT
    image = image.convert("RGB")
    if brightness != 1.0:
        image = ImageEnhance.Brightness(image).enhance(brightness)
    if contrast != 1.0:
        image = ImageEnhance.Contrast(image).enhance(contrast)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def colormap_indices(db: np.ndarray) -> np.ndarray:
    """Robust-percentile contrast normalisation to colormap indices 0..255 (uint8)."""
    step = max(1, db.size // 20_000)  # percentiles of a strided sample are plenty for display
    low, high = np.percentile(db.ravel()[::step], (LOW_PERCENTILE, HIGH_PERCENTILE))
    scaled = np.subtract(db, np.float32(low), dtype=np.float32)  # one float32 buffer, in place
    scaled *= np.float32(256 / max(high - low, 1e-6))
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


def _filterbank_key(config: SpecConfig) -> tuple:
    return (
        config.spec_cal_method,
        config.sampling_rate,
        config.n_fft,
        config.min_frequency,
        config.max_frequency,
        config.bins_per_octave,
    )


@lru_cache(maxsize=32)
def _filterbank(
    method: str, sr: int, n_fft: int, fmin: float, fmax: float, bins_per_octave: int | None
) -> tuple[csr_matrix, np.ndarray]:
    """Sparse (300, n_fft//2+1) band weights, each row summing to 1, and the row centres."""
    if method == "log-mel":
        mels = np.linspace(librosa.hz_to_mel(fmin), librosa.hz_to_mel(fmax), SPEC_ROWS)
        step = mels[1] - mels[0]
        points = librosa.mel_to_hz(np.concatenate(([mels[0] - step], mels, [mels[-1] + step])))
    else:
        points = fmin * 2.0 ** (np.arange(-1, SPEC_ROWS + 1) / bins_per_octave)
    centres = points[1:-1]
    bin_hz = sr / n_fft
    left = np.maximum(centres - points[:-2], bin_hz)[:, None]
    right = np.maximum(points[2:] - centres, bin_hz)[:, None]
    offset = np.arange(n_fft // 2 + 1) * bin_hz - centres[:, None]
    weights = np.maximum(0.0, 1.0 - np.where(offset < 0, -offset / left, offset / right))
    weights /= weights.sum(axis=1, keepdims=True)
    centres.flags.writeable = False
    return csr_matrix(weights.astype(np.float32)), centres


@lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    return scipy.signal.get_window("hann", n_fft).astype(np.float32)


def _windowed_frames(samples: np.ndarray, first: int, hop: int, count: int, window: np.ndarray):
    """(count, n_fft) float32 frames starting at ``first + k * hop``, times ``window``.

    Frames inside the recording are strided views (no gather); only frames overlapping either
    end are gathered, with zeros outside the samples.
    """
    n, n_fft = len(samples), len(window)
    starts = first + hop * np.arange(count)
    inside = np.flatnonzero((starts >= 0) & (starts + n_fft <= n))
    frames = np.empty((count, n_fft), dtype=np.float32)
    if inside.size:
        lo, hi = inside[0], inside[-1] + 1
        span = samples[starts[lo] : starts[hi - 1] + n_fft]
        np.multiply(sliding_window_view(span, n_fft)[::hop], window, out=frames[lo:hi])
    else:
        lo = hi = 0
    edges = np.r_[0:lo, hi:count]
    if edges.size:
        index = starts[edges, None] + np.arange(n_fft)
        gathered = np.where((index >= 0) & (index < n), samples[np.clip(index, 0, n - 1)], 0)
        frames[edges] = gathered * window
    return frames
