"""A synthetic bird "song" with known segments, for demos and tests.

Three syllable types separated by silence, over light background noise:

- A: harmonic stack (f0 rising 700 -> 800 Hz, six harmonics), about 80 ms
- B: upward FM sweep 2 -> 7 kHz, about 60 ms
- C: downward FM sweep 5 -> 2.5 kHz with its second harmonic, about 120 ms

``python -m example_audios.make_example_song`` (from the project root) writes
``synthetic_song.wav`` (16-bit mono) and ``synthetic_song.csv`` (onset, offset, cluster)
next to this file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from whisperseg.segment import Segment

HERE = Path(__file__).resolve().parent
SYLLABLE_SECONDS = {"A": 0.08, "B": 0.06, "C": 0.12}
GAP_SECONDS = (0.04, 0.15)
MARGIN_SECONDS = 0.3
AMPLITUDE = 0.5
NOISE_STD = 0.003  # about -50 dB relative to full scale


def make_song(
    seed: int = 0, duration: float = 20.0, sr: int = 32000
) -> tuple[np.ndarray, list[Segment]]:
    """float32 audio of ``duration`` seconds and its true segments (clusters "A", "B", "C")."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(0.0, NOISE_STD, round(duration * sr)).astype(np.float32)
    segments = []
    t = MARGIN_SECONDS
    while True:
        cluster = str(rng.choice(list(SYLLABLE_SECONDS)))
        length = SYLLABLE_SECONDS[cluster] * rng.uniform(0.9, 1.1)
        if t + length > duration - MARGIN_SECONDS:
            break
        start = round(t * sr)
        syllable = _syllable(cluster, round(length * sr), sr)
        audio[start : start + len(syllable)] += syllable
        segments.append(Segment(start / sr, (start + len(syllable)) / sr, cluster))
        t += length + rng.uniform(*GAP_SECONDS)
    return np.clip(audio, -1.0, 1.0), segments


def _syllable(cluster: str, n: int, sr: int) -> np.ndarray:
    progress = np.linspace(0.0, 1.0, n, endpoint=False)
    if cluster == "A":
        f0 = 700 + 100 * progress
        phase = 2 * np.pi * np.cumsum(f0) / sr
        wave = sum(np.sin(k * phase) / k for k in range(1, 7))
    elif cluster == "B":
        wave = np.sin(2 * np.pi * np.cumsum(2000 + 5000 * progress) / sr)
    else:
        phase = 2 * np.pi * np.cumsum(5000 - 2500 * progress) / sr
        wave = np.sin(phase) + 0.5 * np.sin(2 * phase)
    wave = wave / np.max(np.abs(wave))
    return (AMPLITUDE * wave * _taper(n, round(0.005 * sr))).astype(np.float32)


def _taper(n: int, ramp: int) -> np.ndarray:
    """Raised-cosine fade in and out, so syllables start without clicks."""
    envelope = np.ones(n)
    ramp = min(ramp, n // 2)
    fade = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, ramp))
    envelope[:ramp] = fade
    envelope[n - ramp :] = fade[::-1]
    return envelope


def write_song(directory: Path = HERE, seed: int = 0, duration: float = 20.0, sr: int = 32000):
    """Write ``synthetic_song.wav`` and ``synthetic_song.csv`` into ``directory``."""
    audio, segments = make_song(seed, duration, sr)
    sf.write(directory / "synthetic_song.wav", audio, sr, subtype="PCM_16")
    with open(directory / "synthetic_song.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["onset", "offset", "cluster"])
        writer.writerows([f"{s.onset:.5f}", f"{s.offset:.5f}", s.cluster] for s in segments)


if __name__ == "__main__":
    write_song()
