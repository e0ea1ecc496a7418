"""Load under gunicorn while a finetuning job trains: can annotators keep working?

Starts the documented gunicorn command on a free loopback port (tmp data and models folders,
the shipped model linked in), uploads a real recording, starts finetuning on its human labels
with many steps (so it trains all along) and, with ``--segmentation-minutes``, a segmentation
job over that much song, then runs concurrent clients doing what the frontend does:
spectrogram tiles at random start times, waveforms, WAV clips and model-list polling.
Prints requests/s, p50/p99 latency per endpoint, the error count, whether the job was
training throughout and how far the segmentation job got. Goal: zero errors, tile p99 under
1 s on a 2-core machine.

    python bench/load.py [--seconds 60] [--clients 16] [--recording path.wav]
                         [--segmentation-minutes 30]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.live_server import (  # noqa: E402
    SHARED_DATA,
    LiveServer,
    link_shipped_model,
    wait_for_shipped_model,
)

DEFAULT_RECORDING = SHARED_DATA / "zebra_finch" / "adults" / "zebra_finch_g4p5U-f00049.wav"
JOB = "load-bench"
TILE_SECONDS = 2.0  # the visible window: 1000 columns at 2 ms
TILE_COLUMNS = 1000
# What the frontend sends, by share of requests: mostly tiles while scrolling, the waveform
# above each, a clip when the annotator plays one, and the 10-second model-list poll.
MIX = {"tile": 0.5, "waveform": 0.25, "wav": 0.15, "list-models": 0.1}


@dataclass
class Recording:
    audio_id: str
    duration: float
    sample_rate: int


@dataclass
class Results:
    """Latencies (seconds) per endpoint and failures, shared by the client threads."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, endpoint: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.latencies[endpoint].append(seconds)
            if error:
                self.errors[endpoint] += 1
                if len(self.samples) < 5:
                    self.samples.append(f"{endpoint}: {error}")


def upload(server: LiveServer, path: Path) -> Recording:
    with open(path, "rb") as f:
        reply = requests.post(server.url + "/upload", files={"newAudioFile": f}, timeout=120)
    reply.raise_for_status()
    channel = reply.json()["channels"][0]
    return Recording(
        channel["audio_id"],
        channel["audio_duration"],
        reply.json()["configurations"]["sampling_rate"],
    )


def start_finetuning(server: LiveServer, recording: Recording, labels_path: Path) -> None:
    """Finetune on the recording's human labels; returns once the job is training."""
    labels = json.loads(labels_path.read_text())
    human = [
        {"onset": on, "offset": off, "clustername": cluster}
        for on, off, cluster in zip(
            labels["onset"], labels["offset"], labels["cluster"], strict=True
        )
    ]
    request = {
        "audio_id": recording.audio_id,
        "new_model_name": JOB,
        "annotated_areas": [{"onset": 0, "offset": recording.duration}],
        "human_labels": human,
    }
    requests.post(server.url + "/finetune-whisperseg", json=request, timeout=120).raise_for_status()
    deadline = time.monotonic() + 300
    while job_state(server) != "training":
        if time.monotonic() > deadline:
            raise SystemExit(f"the finetuning job did not start: {job_state(server)}")
        time.sleep(1)


def start_segmentation(server: LiveServer, path: Path, minutes: float) -> str:
    """Upload ``minutes`` of the recording repeated and start a segmentation job on it."""
    audio, sr = sf.read(path, dtype="float32")
    long = np.resize(audio, round(minutes * 60 * sr))
    buffer = io.BytesIO()
    sf.write(buffer, long, sr, format="WAV", subtype="PCM_16")
    files = {"newAudioFile": ("long.wav", buffer.getvalue(), "audio/wav")}
    reply = requests.post(server.url + "/upload", files=files, timeout=600)
    reply.raise_for_status()
    request = {"audio_id": reply.json()["channels"][0]["audio_id"], "model_name": "whisperseg-tiny"}
    reply = requests.post(server.url + "/segmentation-jobs", json=request, timeout=60)
    reply.raise_for_status()
    return reply.json()["job_id"]


def segmentation_state(server: LiveServer, job_id: str) -> tuple[str, float]:
    state = requests.get(f"{server.url}/segmentation-jobs/{job_id}", timeout=60).json()
    return state["state"], state["progress"]


def job(server: LiveServer) -> dict:
    return requests.get(f"{server.url}/training-jobs/{JOB}", timeout=30).json()


def job_state(server: LiveServer) -> str:
    return job(server)["state"]


def one_request(
    session: requests.Session, url: str, kind: str, rec: Recording, rng: random.Random
) -> requests.Response:
    start = rng.uniform(0, max(0.0, rec.duration - TILE_SECONDS))
    if kind == "tile":
        hop = round(rec.sample_rate * TILE_SECONDS / TILE_COLUMNS)
        body = {"audio_id": rec.audio_id, "start_time": start, "hop_length": hop,
                "num_spec_columns": TILE_COLUMNS, "color_map": "viridis"}  # fmt: skip
        return session.post(url + "/get-audio-clip-spec", json=body, timeout=60)
    if kind == "waveform":
        body = {"audio_id": rec.audio_id, "start_time": start, "clip_duration": TILE_SECONDS}
        return session.post(url + "/get-audio-clip-for-visualization", json=body, timeout=60)
    if kind == "wav":
        body = {"audio_id": rec.audio_id, "start_time": start, "clip_duration": TILE_SECONDS}
        return session.post(url + "/get-audio-clip-wav", json=body, timeout=60)
    return session.post(url + "/list-models-training-in-progress", json={}, timeout=60)


def client(server: LiveServer, rec: Recording, results: Results, stop: float, seed: int) -> None:
    """One annotator's browser: a keep-alive session issuing requests back to back."""
    rng = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())
    with requests.Session() as session:
        while time.monotonic() < stop:
            kind = rng.choices(kinds, weights)[0]
            started = time.perf_counter()
            try:
                reply = one_request(session, server.url, kind, rec, rng)
                error = None if reply.ok else f"HTTP {reply.status_code} {reply.text[:200]}"
            except requests.RequestException as exc:
                error = repr(exc)
            results.record(kind, time.perf_counter() - started, error)


def watch_training(server: LiveServer, stop: float, polls: list[tuple[str, float]]) -> None:
    """Poll the job every 2 s: (state, progress fraction)."""
    while time.monotonic() < stop:
        try:
            reply = job(server)
            polls.append((reply["state"], reply["progress"]))
        except requests.RequestException as exc:
            polls.append((f"unreachable: {exc!r}", float("nan")))
        time.sleep(2)


def report(
    results: Results, seconds: float, polls: list[tuple[str, float]], max_steps: int
) -> None:
    total = sum(len(v) for v in results.latencies.values())
    print(
        f"\n{'endpoint':<12} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    for kind in MIX:
        ms = np.array(results.latencies.get(kind) or [np.nan]) * 1000
        count = len(results.latencies.get(kind, []))
        p50, p99 = np.percentile(ms, [50, 99])
        rate = count / seconds
        print(f"{kind:<12} {count:>8} {rate:>7.1f} {p50:>8.0f} {p99:>8.0f} {ms.max():>8.0f}")
    print(f"{'all':<12} {total:>8} {total / seconds:>7.1f}")
    print(f"errors: {sum(results.errors.values())}" + "".join(f"\n  {s}" for s in results.samples))
    states = {state for state, _ in polls}
    throughout = states == {"training"}
    print(f"training throughout: {'yes' if throughout else 'NO'} ({len(polls)} polls, {states})")
    if polls:
        steps = (polls[-1][1] - polls[0][1]) * max_steps
        print(f"training meanwhile: {steps:.0f} steps ({steps / seconds:.2f} steps/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--recording", type=Path, default=DEFAULT_RECORDING)
    parser.add_argument("--max-steps", type=int, default=1_000_000, help="finetuning steps")
    parser.add_argument(
        "--segmentation-minutes", type=float, default=0.0, help="song segmented meanwhile"
    )
    args = parser.parse_args()
    wait_for_shipped_model(timeout_s=3600)
    with tempfile.TemporaryDirectory(prefix="whisperseg-load-") as tmp:
        root = Path(tmp)
        link_shipped_model(root / "models")
        server = LiveServer(root, {"WHISPERSEG_FINETUNE_MAX_STEPS": str(args.max_steps)})
        with server:
            recording = upload(server, args.recording)
            start_finetuning(server, recording, args.recording.with_suffix(".json"))
            segmentation = None
            if args.segmentation_minutes:
                segmentation = start_segmentation(server, args.recording, args.segmentation_minutes)
                before = segmentation_state(server, segmentation)
            print(f"{args.clients} clients for {args.seconds:g} s on {args.recording.name} "
                  f"({recording.duration:.1f} s) while {JOB!r} trains")  # fmt: skip
            results, polls = Results(), []
            started = time.monotonic()
            stop = started + args.seconds
            threads = [
                threading.Thread(target=client, args=(server, recording, results, stop, seed))
                for seed in range(args.clients)
            ]
            threads.append(threading.Thread(target=watch_training, args=(server, stop, polls)))
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            report(results, time.monotonic() - started, polls, args.max_steps)
            if segmentation:
                state, progress = segmentation_state(server, segmentation)
                minutes = (progress - before[1]) * args.segmentation_minutes
                print(f"segmentation job meanwhile: {before[0]} -> {state}, {minutes:.1f} of "
                      f"{args.segmentation_minutes:g} min of song segmented")  # fmt: skip
            requests.post(server.url + "/cancel-finetuning", json={"model_name": JOB}, timeout=60)


if __name__ == "__main__":
    main()
