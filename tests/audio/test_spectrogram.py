"""spectrogram.py as a notebook would use it: parameters, rows, matrices, images."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf
from api_helpers import decode_jpeg, tone

from spectrogram import (
    COLORMAPS,
    SPEC_ROWS,
    SpecConfigError,
    band_weights,
    colormap_indices,
    compute_db,
    default_n_fft,
    min_bins_per_octave,
    render_jpeg_base64,
    resolve_config,
    row_frequencies,
)


@pytest.mark.parametrize(
    ("rate", "n_fft"),
    [(8000, 512), (32000, 512), (44100, 1024), (80000, 1024), (96000, 2048), (150000, 2048),
     (250000, 4096), (300000, 4096), (384000, 8192)],
)  # fmt: skip
def test_n_fft_table(rate, n_fft):
    assert default_n_fft(rate) == n_fft
    assert resolve_config(rate, 10_000).n_fft == n_fft
    assert resolve_config(rate, 10_000, n_fft=0).n_fft == n_fft
    assert resolve_config(rate, 10_000, n_fft=256).n_fft == 256


@pytest.mark.parametrize(("fmin", "fmax"), [(50, 16000), (50, 22050), (100, 8000), (1000, 1500)])
def test_bins_per_octave_is_the_smallest_that_fits(fmin, fmax):
    b = min_bins_per_octave(fmin, fmax)
    assert fmin * 2 ** (300 / b) <= fmax
    assert b == 1 or fmin * 2 ** (300 / (b - 1)) > fmax


def test_defaults_and_clamping():
    mel = resolve_config(32000, 320_000, min_frequency=-1, max_frequency=20000)
    assert (mel.min_frequency, mel.max_frequency, mel.hop_length) == (0, 16000, 320)
    assert mel.num_spec_columns == 1000 and mel.bins_per_octave is None
    cq = resolve_config(32000, 320_000, spec_cal_method="constant-q", min_frequency=0)
    assert (cq.min_frequency, cq.max_frequency, cq.bins_per_octave) == (50, 16000, 37)
    short = resolve_config(32000, 10, num_spec_columns=1000)
    assert short.hop_length == 1  # never zero, even for a clip shorter than the image


@pytest.mark.parametrize(
    "params",
    [
        {"spec_cal_method": "cqt"},
        {"min_frequency": 16000},
        {"min_frequency": 5000, "max_frequency": 5000},
        {"spec_cal_method": "constant-q", "min_frequency": 100, "max_frequency": 60},
    ],
)
def test_impossible_parameters_raise(params):
    with pytest.raises(SpecConfigError):
        resolve_config(32000, 32000, **params)


def test_rows_are_mel_spaced_from_min_to_max():
    freqs = row_frequencies(resolve_config(32000, 32000, min_frequency=300, max_frequency=12000))
    assert len(freqs) == SPEC_ROWS
    assert freqs[0] == pytest.approx(300) and freqs[-1] == pytest.approx(12000)
    mels = librosa.hz_to_mel(freqs)
    assert np.diff(mels) == pytest.approx(np.full(299, np.diff(mels).mean()))


def test_rows_are_geometric_for_constant_q():
    config = resolve_config(44100, 44100, spec_cal_method="constant-q", min_frequency=100)
    freqs = row_frequencies(config)
    assert freqs[0] == pytest.approx(100)
    assert freqs == pytest.approx(100 * 2 ** (np.arange(300) / config.bins_per_octave))
    assert freqs[-1] <= 22050


@pytest.mark.parametrize("method", ["log-mel", "constant-q"])
@pytest.mark.parametrize("freq", [400.0, 3000.0, 11000.0])
def test_a_tone_is_loudest_in_its_row(method, freq):
    sr = 32000
    samples = (tone(freq, 1.0, sr) * 32767).astype(np.int16)
    config = resolve_config(sr, len(samples), spec_cal_method=method, num_spec_columns=50)
    db = compute_db(samples, 0, config)
    assert db.shape == (SPEC_ROWS, 50) and db.dtype == np.float32
    peak = row_frequencies(config)[np.argmax(db[:, 10:40].mean(axis=1))]
    fft_bin_hz = sr / config.n_fft  # the resolution limit at low frequencies
    assert abs(peak - freq) <= max(0.04 * freq, fft_bin_hz / 2)


def test_int16_and_float_samples_give_the_same_matrix():
    samples = (tone(2000, 0.5, 32000) * 32767).astype(np.int16)
    config = resolve_config(32000, len(samples))
    as_int = compute_db(samples, 0, config)
    as_float = compute_db(samples.astype(np.float32) / 32768, 0, config)
    assert np.abs(as_int - as_float).max() < 1e-3
    # A full-scale-ish tone is far above the -100 dB floor.
    assert as_int.max() > 0


@pytest.mark.parametrize("method", ["log-mel", "constant-q"])
def test_matrix_is_librosa_stft_power_through_the_band_weights(method):
    """Same framing as librosa (Hann, centred frames, zeros beyond the ends), then the bands."""
    rng = np.random.default_rng(1)
    samples = (rng.normal(0, 0.1, 16000) * np.linspace(0.05, 1, 16000)).astype(np.float32)
    config = resolve_config(
        16000, len(samples), spec_cal_method=method, hop_length=160, num_spec_columns=100
    )
    power = np.abs(librosa.stft(samples, n_fft=512, hop_length=160, pad_mode="constant")) ** 2
    expected = 10 * np.log10(np.maximum(band_weights(config) @ power[:, :100], 1e-10))
    assert np.abs(compute_db(samples, 0, config) - expected).max() < 0.01
    weights = band_weights(config)
    assert weights.shape == (300, 257)
    assert np.asarray(weights.sum(axis=1)).ravel() == pytest.approx(np.ones(300), rel=1e-5)


def test_frames_past_either_end_are_silence():
    samples = (tone(1000, 0.1, 32000) * 32767).astype(np.int16)
    config = resolve_config(32000, len(samples), hop_length=320, num_spec_columns=30)
    db = compute_db(samples, -3200, config)  # starts 10 columns before the recording
    assert db[:, :9].max() == pytest.approx(-100)
    assert db[:, 12:18].max() > 0
    assert db[:, 21:].max() == pytest.approx(-100)


def test_hop_longer_than_the_window_on_a_real_recording(shared_data):
    wav = shared_data / "zebra_finch" / "adults" / "zebra_finch_g4p5U-f00049.wav"
    samples, sr = sf.read(wav, dtype="int16")
    config = resolve_config(sr, len(samples))
    assert config.hop_length > config.n_fft
    db = compute_db(samples, 0, config)
    for column in (0, 1, 500, 999):
        centre = column * config.hop_length
        frame = np.zeros(512)
        lo = max(0, centre - 256)
        frame[lo - (centre - 256) :] = samples[lo : centre + 256] / 32768
        power = np.abs(np.fft.rfft(frame * np.hanning(513)[:-1])) ** 2
        expected = 10 * np.log10(np.maximum(band_weights(config) @ power, 1e-10))
        assert np.abs(db[:, column] - expected).max() < 0.01


def test_colormap_tables_match_matplotlib_endpoints():
    assert set(COLORMAPS) == {"viridis", "plasma", "inferno", "magma", "cividis", "gray"}
    assert COLORMAPS["viridis"][0].tolist() == [68, 1, 84]
    assert COLORMAPS["viridis"][-1].tolist() == [253, 231, 36]
    assert COLORMAPS["inferno"][0].tolist() == [0, 0, 3]
    assert COLORMAPS["gray"][128].tolist() == [128, 128, 128]
    for table in COLORMAPS.values():
        assert table.shape == (256, 3) and table.dtype == np.uint8


def test_contrast_normalisation_ignores_outliers():
    db = np.full((300, 200), -60.0, dtype=np.float32)
    db[100:110, :] = -20.0  # a loud band
    db[0, 0] = 80.0  # a single glitch must not wash out the image
    indices = colormap_indices(db)
    assert indices[105, 50] == 255 and indices[200, 50] == 0


def test_rendered_image_orientation_colors_and_enhancement():
    db = np.tile(np.linspace(-80, -10, 300, dtype=np.float32)[:, None], (1, 100))
    pixels = decode_jpeg(render_jpeg_base64(db, "gray")).astype(float)
    assert pixels.shape == (300, 100, 3)
    # Loudest (highest-frequency) row on top, quietest at the bottom, mid-grey between.
    assert pixels[0].mean() > 240 and pixels[-1].mean() < 15
    assert 100 < pixels[150].mean() < 156
    inferno = decode_jpeg(render_jpeg_base64(db, "INFERNO")).astype(float)
    assert inferno[0].mean() > 180 and inferno[0, :, 2].mean() < inferno[0, :, 0].mean()
    brighter = decode_jpeg(render_jpeg_base64(db, "gray", brightness=1.5)).astype(float)
    assert brighter[150].mean() == pytest.approx(1.5 * pixels[150].mean(), rel=0.05)
    flat = decode_jpeg(render_jpeg_base64(db, "gray", contrast=0.0)).astype(float)
    assert flat.std() < 3
