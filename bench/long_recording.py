"""Hours-long recordings through the real server: upload, browse, segment, ask again.

Builds a 3-hour 32 kHz recording from the shared zebra finch songs (each song followed
by silence, repeated), starts the server as an operator does (gunicorn, default
settings), and prints: the upload time, the peak RSS of the server against its fixed
share and audio budget, the whole-file overview and a tile at 1 h 30 min, the time of a
segmentation job over a 10-minute recording made the same way, and the time of the
second get-labels for that audio and model (answered from the kept predictions).

    python bench/long_recording.py [--hours 3] [--job-minutes 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.memory import RssSampler, multipart_file, upload_file, warm_up  # noqa: E402
from server.settings import ServerSettings  # noqa: E402
from tests.support.live_server import (  # noqa: E402
    SHARED_DATA,
    LiveServer,
    link_shipped_model,
    proc_status_kib,
    reset_peak_rss,
)

RATE = 32000
SILENCE_S = 4.0


def song_cycle() -> np.ndarray:
    """Every shared zebra finch song once, each followed by silence: about 9 minutes."""
    parts = []
    for wav in sorted((SHARED_DATA / "zebra_finch").rglob("*.wav")):
        audio, sr = sf.read(wav, dtype="float32", always_2d=True)
        if sr == RATE:
            parts += [audio.mean(axis=1), np.zeros(round(SILENCE_S * RATE), np.float32)]
    if not parts:
        raise SystemExit(f"no 32 kHz zebra finch songs found under {SHARED_DATA}")
    return np.concatenate(parts)


def write_recording(path: Path, seconds: float, cycle: np.ndarray) -> None:
    """``seconds`` of the song cycle, repeated, as 16-bit PCM (written a cycle at a time)."""
    left = round(seconds * RATE)
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as f:
        while left > 0:
            piece = cycle[:left]
            f.write(piece)
            left -= len(piece)


def timed(action) -> tuple[object, float]:
    started = time.monotonic()
    result = action()
    return result, time.monotonic() - started


def post(url: str, path: str, body: dict) -> dict:
    reply = requests.post(url + path, json=body, timeout=3600)
    reply.raise_for_status()
    return reply.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--job-minutes", type=float, default=10.0)
    args = parser.parse_args()
    cycle = song_cycle()
    with tempfile.TemporaryDirectory(prefix="whisperseg-long-") as tmp:
        root = Path(tmp)
        work = root / "uploads"
        work.mkdir()
        with_model = link_shipped_model(root / "models")
        long_wav, long_body = work / "long.wav", work / "long.body"
        write_recording(long_wav, args.hours * 3600, cycle)
        content_type = multipart_file(long_wav, long_body)
        with LiveServer(root) as server:
            url, pid = server.url, server.serving_pid()
            warm_up(url, work, with_model)
            fixed_kib = proc_status_kib(pid, "VmRSS")
            reset_peak_rss(pid)
            sampler = RssSampler(pid)
            sampler.start()
            reply, upload_s = timed(lambda: upload_file(url, long_body, content_type))
            audio_id = reply["channels"][0]["audio_id"]
            config = reply["configurations"]
            overview = {"audio_id": audio_id, "hop_length": config["hop_length"]}
            _, overview_s = timed(lambda: post(url, "/get-audio-clip-spec", overview))
            tile = {"audio_id": audio_id, "start_time": 5400.0, "hop_length": 320}
            _, tile_s = timed(lambda: post(url, "/get-audio-clip-spec", tile))
            post(url, "/release-audio-given-ids", {"audio_id_list": [audio_id]})

            short_wav, short_body = work / "job.wav", work / "job.body"
            write_recording(short_wav, args.job_minutes * 60, cycle)
            short = upload_file(url, short_body, multipart_file(short_wav, short_body))
            short_id = short["channels"][0]["audio_id"]
            model = "whisperseg-tiny" if with_model else "energy-threshold"
            request = {"audio_id": short_id, "model_name": model}
            job_s, polls = job_time(url, request)
            labels, again_s = timed(lambda: post(url, "/get-labels", request))
            sampler.running = False
            peak_kib = proc_status_kib(pid, "VmHWM")
    fixed, peak = fixed_kib / 1024, peak_kib / 1024
    budget = ServerSettings().audio_memory_budget_mb
    print(f"{args.hours:g} h of 32 kHz mono 16-bit ({long_wav_mb(args.hours):.0f} MB)")
    print(f"upload: {upload_s:.1f} s (overview of {config['num_spec_columns']} columns included)")
    print(f"whole-file overview again: {overview_s * 1000:.0f} ms; tile at 1 h 30 min: "
          f"{tile_s * 1000:.0f} ms")  # fmt: skip
    print(f"segmentation job over {args.job_minutes:g} min with {model}: {job_s:.1f} s "
          f"(real-time factor {job_s / (args.job_minutes * 60):.3f}, {polls} polls, progress "
          "reported each time)")  # fmt: skip
    print(f"second get-labels for the same audio and model: {again_s * 1000:.0f} ms "
          f"({len(labels['labels'])} labels)")  # fmt: skip
    sampled = sampler.highest_kib / 1024
    print(f"peak RSS: {peak:.0f} MB = fixed share {fixed:.0f} MB + {peak - fixed:.0f} MB "
          f"(audio budget {budget:g} MB; highest sampled {sampled:.0f} MB)")  # fmt: skip


def long_wav_mb(hours: float) -> float:
    return hours * 3600 * RATE * 2 / 2**20


def job_time(url: str, request: dict) -> tuple[float, int]:
    """Seconds from submitting a segmentation job to its end, and how often it was polled."""
    started = time.monotonic()
    job_id = post(url, "/segmentation-jobs", request)["job_id"]
    polls, last = 0, -1.0
    while True:
        state = requests.get(f"{url}/segmentation-jobs/{job_id}", timeout=60).json()
        polls += 1
        if state["progress"] < last:
            raise SystemExit("progress went backwards")
        last = state["progress"]
        if state["state"] in ("done", "failed", "cancelled"):
            if state["state"] != "done":
                raise SystemExit(f"segmentation job ended {state['state']}: {state['error']}")
            return time.monotonic() - started, polls
        time.sleep(1.0)


if __name__ == "__main__":
    main()
