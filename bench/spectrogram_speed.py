"""Spectrogram round-trip speed and audio memory cost, on a real 32 kHz recording.

Prints the median time of a 1000-column /get-audio-clip-spec round trip through the Flask
test client (JSON in, JPEG + JSON out) for log-mel and constant-q, next to a bare
``librosa.feature.melspectrogram`` of the same samples with the same n_fft, hop and 300 bands,
and the bytes the audio store holds per second of 32 kHz mono audio.

    python bench/spectrogram_speed.py [path/to/recording.wav]
"""

from __future__ import annotations

import gc
import io
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import librosa
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend import create_app  # noqa: E402
from server.settings import ServerSettings  # noqa: E402

DEFAULT_RECORDING = (
    Path(__file__).resolve().parents[2]
    / "shared/data/zebra_finch/adults/zebra_finch_g4p5U-f00049.wav"
)
REPEATS = 21


def median_ms(action) -> float:
    action()  # warm caches (filterbanks, windows)
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(recording: Path) -> None:
    samples, sr = sf.read(recording, dtype="float32")
    hop = len(samples) // 1000
    print(f"{recording.name}: {len(samples) / sr:.2f} s at {sr} Hz, hop {hop}, 1000 columns")

    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(ServerSettings(data_dir=Path(data_dir)))
        client = app.test_client()
        store = app.extensions["whisperseg"].audio
        data = recording.read_bytes()

        warm_up = client.post("/upload", data={"newAudioFile": (io.BytesIO(data), "a.wav")})
        store.release([c["audio_id"] for c in warm_up.json["channels"]])  # imports, caches
        del warm_up
        tracemalloc.start()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        reply = client.post("/upload", data={"newAudioFile": (io.BytesIO(data), "a.wav")})
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        audio_id = reply.json["channels"][0]["audio_id"]

        def round_trip(method: str):
            body = {"audio_id": audio_id, "hop_length": hop, "spec_cal_method": method}
            response = client.post("/get-audio-clip-spec", json=body)
            assert response.status_code == 200, response.json
            return response.json

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns about empty mel bands at n_fft 512
            bare = median_ms(
                lambda: librosa.feature.melspectrogram(
                    y=samples, sr=sr, n_fft=512, hop_length=hop, n_mels=300
                )
            )
        print(f"bare librosa melspectrogram:   {bare:7.2f} ms")
        for method in ("log-mel", "constant-q"):
            ms = median_ms(lambda method=method: round_trip(method))
            print(f"get-audio-clip-spec {method:10s} {ms:7.2f} ms  ({ms / bare:.2f}x librosa)")

        seconds = len(samples) / sr
        print(
            f"audio store: {store.bytes_used / seconds:,.0f} bytes per second of 32 kHz mono "
            f"(all memory retained by an upload, tracemalloc: {retained / seconds:,.0f}; "
            f"{len(data) / seconds:,.0f} bytes/s of WAV file)"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_RECORDING)
