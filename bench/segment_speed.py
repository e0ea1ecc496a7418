"""Real-time factor of segmentation (seconds of compute per second of audio).

Segments 60 s of real zebra finch song (recordings of ../shared/data joined end to end)
with 1 and 3 trials, on the CPU and, when one is present, on the GPU.

    python bench/segment_speed.py [--model models/whisperseg-tiny] [--seconds 60]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from whisperseg.datasets import find_recordings, load_recording, shared_data_dir  # noqa: E402
from whisperseg.model import WhisperSegModel  # noqa: E402
from whisperseg.segmentation import SPECIES_DEFAULTS, segment_recording  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]


def real_song(seconds: float) -> tuple[np.ndarray, int]:
    data = shared_data_dir()
    if data is None:
        sys.exit("../shared/data not found")
    recordings = [load_recording(p) for p in find_recordings(data / "zebra_finch" / "adults")]
    audio = np.concatenate([r.audio for r in recordings])
    sr = recordings[0].sr
    return np.resize(audio, round(seconds * sr)), sr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(PROJECT / "models" / "whisperseg-tiny"))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch-size", type=int, help="windows per batch (default: by device)")
    args = parser.parse_args()
    audio, sr = real_song(args.seconds)
    variants = [("cpu", False), ("cpu", True)]
    variants += [("cuda", False)] if torch.cuda.is_available() else []
    threads = torch.get_num_threads()
    print(f"{args.seconds:.0f} s of zebra finch song at {sr} Hz; torch threads {threads}")
    for device, quantize in variants:
        model = WhisperSegModel.load(args.model, device=device, quantize=quantize)
        name = f"{device}{' int8' if quantize else ''}"
        segment_recording(model, audio[: sr * 3], sr, SPECIES_DEFAULTS["zebra_finch"])  # warm-up
        for trials in (1, 3):
            config = replace(
                SPECIES_DEFAULTS["zebra_finch"], num_trials=trials, batch_size=args.batch_size
            )
            started = time.perf_counter()
            segments = segment_recording(model, audio, sr, config)
            elapsed = time.perf_counter() - started
            print(
                f"{name:<9} {trials} trial(s): {elapsed:6.2f} s, real-time factor "
                f"{elapsed / args.seconds:.3f}, {len(segments)} segments"
            )


if __name__ == "__main__":
    main()
