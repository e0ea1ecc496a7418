"""The energy baseline on synthetic tones and on the shared recordings."""

from __future__ import annotations

import numpy as np
import pytest

from whisperseg.datasets import (
    HELD_OUT,
    find_recordings,
    held_out_group,
    load_recording,
    shared_data_dir,
)
from whisperseg.energy import EnergyParams, energy_segments
from whisperseg.metrics import evaluate_files, segment_counts

SR = 32000
TONES = [(0.30, 0.45, 3000.0), (0.80, 0.86, 5000.0), (1.50, 1.90, 2000.0)]
DATA = shared_data_dir()
needs_data = pytest.mark.skipif(
    DATA is None, reason="shared recordings not found at ../shared/data next to the repository"
)


def _tones_in_noise(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(2.5 * SR)) / SR
    audio = 0.002 * rng.standard_normal(len(t))
    for onset, offset, freq in TONES:
        # 5 ms linear ramps, as in real calls; hard edges would be broadband clicks.
        envelope = np.clip(np.minimum(t - onset, offset - t) / 0.005, 0.0, 1.0)
        audio += 0.2 * envelope * np.sin(2 * np.pi * freq * t)
    return audio.astype(np.float32)


def test_tones_found_within_10_ms() -> None:
    found = energy_segments(_tones_in_noise(), SR, cluster="tone")
    assert len(found) == len(TONES)
    for seg, (onset, offset, _) in zip(found, TONES, strict=True):
        assert abs(seg.onset - onset) <= 0.01
        assert abs(seg.offset - offset) <= 0.01
        assert seg.cluster == "tone"


def test_noise_and_silence_give_nothing() -> None:
    noise = 0.01 * np.random.default_rng(1).standard_normal(SR).astype(np.float32)
    assert energy_segments(noise, SR) == []
    assert energy_segments(np.zeros(SR, dtype=np.float32), SR) == []
    assert energy_segments(np.zeros(0, dtype=np.float32), SR) == []


def test_band_excludes_out_of_band_tones() -> None:
    params = EnergyParams(min_frequency=4000.0, max_frequency=6000.0)
    found = energy_segments(_tones_in_noise(), SR, params)
    assert [(round(s.onset, 1), round(s.offset, 1)) for s in found] == [(0.8, 0.9)]


@needs_data
@pytest.mark.parametrize("name", ["zebra_finch_g17y2U-f00007", "zebra_finch_g19o3U-f00471"])
def test_adult_zebra_finch_floor(name: str) -> None:
    assert DATA is not None
    rec = load_recording(DATA / "zebra_finch" / "adults" / f"{name}.wav")
    pred = energy_segments(rec.audio, rec.sr, cluster=rec.segments[0].cluster)
    counts = segment_counts(pred, rec.segments, rec.tolerance)
    print(f"{name}: segment F1 {counts.f1:.3f} ({counts})")
    assert counts.f1 >= 0.6


@needs_data
def test_held_out_baseline_report() -> None:
    """Prints the baseline per held-out group (segment F1 at 10 ms, frame F1, summed counts)."""
    assert DATA is not None
    pairs: dict[str, list] = {group: [] for group in HELD_OUT}
    for path in find_recordings(DATA):
        group = held_out_group(path)
        if group is not None:
            rec = load_recording(path)
            cluster = "vocal" if "canary" in group else "zebra_finch_0"
            pairs[group].append((energy_segments(rec.audio, rec.sr, cluster=cluster), rec.segments))
    results = {g: evaluate_files(p, tolerance=0.01, time_per_frame=0.001) for g, p in pairs.items()}
    for group, r in results.items():
        print(
            f"{group}: files {len(pairs[group])}, segment F1 {r['segment_f1']:.3f} "
            f"(tp {r['segment_tp']} fp {r['segment_fp']} fn {r['segment_fn']}), "
            f"frame F1 {r['frame_f1']:.3f}"
        )
    assert results["adults_g4p5U"]["segment_f1"] >= 0.5
