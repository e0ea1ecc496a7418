"""Memory under a small audio budget: does the server's RSS stay within budget + fixed share?

Starts gunicorn with a small ``WHISPERSEG_AUDIO_MEMORY_BUDGET_MB`` and uploads long generated
recordings (default 20 x 10 min of 32 kHz 16-bit mono, hours in all), each written to disk
and streamed from there, then asks for a tile of each as the frontend would. The fixed share
is the RSS of the idle server after a warm-up request (and, when the shipped model is there,
one get-labels so the model is loaded). Prints the worker's peak RSS (VmHWM) against that
share plus the budget.

The audio store holds at most the budget (plus a quarter for resampled views); an upload
also needs its request body and its decoded samples while it is being stored, so the peak
can exceed the fixed share by the budget plus about twice the largest file.

    python bench/memory.py [--budget-mb 64] [--files 20] [--minutes 10]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import requests
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.live_server import (  # noqa: E402
    LiveServer,
    link_shipped_model,
    proc_status_kib,
    reset_peak_rss,
)

RATE = 32000
MIB = 1024 * 1024


def write_recording(path: Path, minutes: float, seed: int) -> None:
    """A 16-bit WAV of noise and bird-like chirps, written a minute at a time."""
    rng = np.random.default_rng(seed)
    t = np.arange(60 * RATE) / RATE
    chirps = 0.3 * np.sin(2 * np.pi * (2000 + 1500 * np.sin(2 * np.pi * 3 * t)) * t)
    chirps *= (t % 2) < 0.3  # a 0.3 s chirp every 2 s
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as f:
        for _ in range(int(minutes)):
            f.write(chirps + 0.05 * rng.standard_normal(len(t)))


def multipart_file(wav: Path, out: Path) -> str:
    """Write the /upload multipart body to ``out`` (so it streams from disk); its content type."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="newAudioFile"; '
        f'filename="{wav.name}"\r\nContent-Type: audio/wav\r\n\r\n'
    )
    with open(out, "wb") as body, open(wav, "rb") as audio:
        body.write(head.encode())
        shutil.copyfileobj(audio, body, 1 << 20)
        body.write(f"\r\n--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}"


def upload_file(url: str, body: Path, content_type: str) -> dict:
    with open(body, "rb") as f:  # a file object: requests streams it with a Content-Length
        reply = requests.post(
            url + "/upload", data=f, headers={"Content-Type": content_type}, timeout=600
        )
    reply.raise_for_status()
    return reply.json()


class RssSampler(threading.Thread):
    """Highest VmRSS sampled every 50 ms: a cross-check of VmHWM."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.highest_kib, self.running = pid, 0, True

    def run(self) -> None:
        while self.running:
            self.highest_kib = max(self.highest_kib, proc_status_kib(self.pid, "VmRSS"))
            time.sleep(0.05)


def warm_up(url: str, work: Path, with_model: bool) -> None:
    """One small upload, tile and (with the model) get-labels: fills caches, loads the model."""
    wav = work / "warm-up.wav"
    write_recording(wav, 1, seed=0)
    body = work / "warm-up.body"
    audio_id = upload_file(url, body, multipart_file(wav, body))["channels"][0]["audio_id"]
    requests.post(url + "/get-audio-clip-spec", json={"audio_id": audio_id}, timeout=600)
    if with_model:
        request = {"audio_id": audio_id, "model_name": "whisperseg-tiny"}
        requests.post(url + "/get-labels", json=request, timeout=600).raise_for_status()
    requests.post(url + "/release-audio-given-ids", json={"audio_id_list": [audio_id]}, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-mb", type=float, default=64)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--minutes", type=int, default=10, help="length of each recording")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="whisperseg-memory-") as tmp:
        root = Path(tmp)
        work = root / "uploads"
        work.mkdir()
        with_model = link_shipped_model(root / "models")
        env = {"WHISPERSEG_AUDIO_MEMORY_BUDGET_MB": str(args.budget_mb)}
        with LiveServer(root, env) as server:
            pid = server.serving_pid()
            warm_up(server.url, work, with_model)
            time.sleep(1)
            fixed_kib = proc_status_kib(pid, "VmRSS")
            reset_peak_rss(pid)  # the peak of the uploads, not of start-up and warm-up
            sampler = RssSampler(pid)
            sampler.start()
            started, largest = time.monotonic(), 0
            for i in range(args.files):
                wav, body = work / f"long-{i}.wav", work / f"long-{i}.body"
                write_recording(wav, args.minutes, seed=i + 1)
                largest = max(largest, wav.stat().st_size)
                reply = upload_file(server.url, body, multipart_file(wav, body))
                tile = {"audio_id": reply["channels"][0]["audio_id"], "start_time": 60}
                requests.post(server.url + "/get-audio-clip-spec", json=tile, timeout=600)
                wav.unlink()
                body.unlink()
            sampler.running = False
            peak_kib = proc_status_kib(pid, "VmHWM")
            elapsed = time.monotonic() - started
    fixed, peak, budget = fixed_kib / 1024, peak_kib / 1024, args.budget_mb
    hours = args.files * args.minutes / 60
    print(f"uploaded {args.files} x {args.minutes} min ({hours:.1f} h, "
          f"{largest / MIB:.0f} MB per file) in {elapsed:.0f} s")  # fmt: skip
    print(f"fixed share (idle, warmed up{', model loaded' if with_model else ''}): {fixed:.0f} MB")
    print(f"audio budget: {budget:g} MB (+{budget / 4:g} MB resampled views)")
    print(f"peak RSS (VmHWM): {peak:.0f} MB = fixed share + {peak - fixed:.0f} MB")
    print(f"highest RSS sampled during uploads: {sampler.highest_kib / 1024:.0f} MB")
    bound = fixed + 1.25 * budget + 2 * largest / MIB
    print(f"bound (fixed + 1.25 x budget + 2 x largest upload): {bound:.0f} MB -> "
          f"{'within' if peak <= bound else 'EXCEEDED'}")  # fmt: skip


if __name__ == "__main__":
    main()
