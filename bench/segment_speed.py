"""Real-time factor of segmentation (seconds of compute per second of audio).

Segments 60 s of real zebra finch song (recordings of ../shared/data joined end to end)
with 1 and 3 trials: torch in full precision, torch int8, CTranslate2 int8, and on a GPU
(when there is one) torch and CTranslate2 in half precision. Then the same audio through
the real server (gunicorn, as an operator runs it): one /get-labels, timed.

    python bench/segment_speed.py [--model models/whisperseg-tiny] [--seconds 60]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import requests
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.live_server import SHIPPED_MODEL, LiveServer, link_shipped_model  # noqa: E402
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
    variants = [
        ("cpu torch fp32", "cpu", False, "torch"),
        ("cpu torch int8", "cpu", True, "torch"),
        ("cpu ct2 int8", "cpu", False, "ct2"),
    ]
    if torch.cuda.is_available():
        variants += [
            ("cuda torch half", "cuda", False, "torch"),
            ("cuda ct2 int8_fp16", "cuda", False, "ct2"),
        ]
    threads = torch.get_num_threads()
    print(f"{args.seconds:.0f} s of zebra finch song at {sr} Hz; torch threads {threads}")
    for name, device, quantize, backend in variants:
        model = WhisperSegModel.load(args.model, device, quantize=quantize, backend=backend)
        segment_recording(model, audio[: sr * 3], sr, SPECIES_DEFAULTS["zebra_finch"])  # warm-up
        for trials in (1, 3):
            config = replace(
                SPECIES_DEFAULTS["zebra_finch"], num_trials=trials, batch_size=args.batch_size
            )
            started = time.perf_counter()
            segments = segment_recording(model, audio, sr, config)
            elapsed = time.perf_counter() - started
            print(
                f"{name:<18} {trials} trial(s): {elapsed:6.2f} s, real-time factor "
                f"{elapsed / args.seconds:.3f}, {len(segments)} segments"
            )
    if Path(args.model).resolve() == SHIPPED_MODEL.resolve():
        elapsed, count = get_labels_time(audio, sr)
        print(
            f"get-labels over HTTP, as served: {elapsed:6.2f} s, real-time factor "
            f"{elapsed / args.seconds:.3f}, {count} labels"
        )


def get_labels_time(audio: np.ndarray, sr: int) -> tuple[float, int]:
    """Seconds of one /get-labels on ``audio`` in a fresh server, after a warm-up request."""
    with tempfile.TemporaryDirectory(prefix="whisperseg-speed-") as tmp:
        root = Path(tmp)
        link_shipped_model(root / "models")
        with LiveServer(root) as server:
            ids = [upload(server.url, clip, sr) for clip in (audio[: sr * 3], audio)]
            request = {"model_name": SHIPPED_MODEL.name}
            post(server.url, "/get-labels", {**request, "audio_id": ids[0]})  # loads the model
            started = time.perf_counter()
            labels = post(server.url, "/get-labels", {**request, "audio_id": ids[1]})["labels"]
            return time.perf_counter() - started, len(labels)


def upload(url: str, audio: np.ndarray, sr: int) -> str:
    buffer = io.BytesIO()
    sf.write(buffer, audio, sr, format="WAV", subtype="PCM_16")
    files = {"newAudioFile": ("song.wav", buffer.getvalue(), "audio/wav")}
    reply = requests.post(url + "/upload", files=files, timeout=600)
    reply.raise_for_status()
    return reply.json()["channels"][0]["audio_id"]


def post(url: str, path: str, body: dict) -> dict:
    reply = requests.post(url + path, json=body, timeout=3600)
    reply.raise_for_status()
    return reply.json()


if __name__ == "__main__":
    main()
