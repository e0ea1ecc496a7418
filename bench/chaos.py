"""Distributed mode under chaos: workers killed at random, Redis and the server restarted.

On this machine: Redis, the server (gunicorn, ``--broker``) and 2 workers with the default
lease settings (30 s lease, renewed every 5 s). Finetuning and segmentation jobs (12 by
default, half of each, small) are submitted over HTTP during the first half of the run. For
``--minutes``, a random worker is SIGKILLed and a new one started every 60-120 s; Redis is
restarted once (a clean stop, as an upgrade would) and the server once (SIGKILL). Then it
waits for the jobs to end and prints:

- jobs submitted, done, failed (or otherwise ended), still running;
- jobs run more than once at the same time (from the lease log: must be 0);
- the longest time a job stayed assigned to a dead worker (kill to requeue), and from a
  kill to the job running again (which includes waiting in the queue behind other jobs);
- whether every finished model loads, and whether every segmentation job's labels equal
  those of an undisturbed run of the same audio (submitted again at the end, calm).

    python bench/chaos.py --minutes 10
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distributed.lease import LOG_KEY  # noqa: E402
from example_audios.make_example_song import make_song  # noqa: E402
from tests.api_helpers import audio_bytes  # noqa: E402
from tests.support.live_server import LiveServer, link_shipped_model  # noqa: E402
from tests.support.local_cluster import RedisServer, Workers  # noqa: E402

ENDED = ("done", "failed", "cancelled")


@dataclass
class Job:
    kind: str  # finetune | segment
    name: str  # model name, or segmentation job id
    seed: int
    seconds: float
    submitted_at: float
    state: str = "queued"
    labels: list = field(default_factory=list)


@dataclass
class Chaos:
    root: Path
    steps: int
    rng: random.Random
    redis: RedisServer | None = None
    server: LiveServer | None = None
    workers: Workers | None = None
    kills: list[tuple[float, str]] = field(default_factory=list)  # (time, worker name)
    events: list[str] = field(default_factory=list)
    t0: float = field(default_factory=time.time)

    def say(self, text: str) -> None:
        line = f"[{time.time() - self.t0:6.0f} s] {text}"
        self.events.append(line)
        print(line, flush=True)

    # --- the pieces ---------------------------------------------------------------------

    def start(self) -> None:
        assert link_shipped_model(self.root / "models"), "models/whisperseg-tiny is missing"
        self.redis = RedisServer(self.root / "redis")
        self.workers = Workers(
            self.redis.url, self.root / "models", self.root / "data", self.root / "logs"
        )
        self.workers.start(2)
        env = {
            "WHISPERSEG_BROKER_URL": self.redis.url,
            "WHISPERSEG_FINETUNE_MAX_STEPS": str(self.steps),
        }
        self.server = LiveServer(self.root, env)  # root/data and root/models, as the workers'
        self.server.start()
        self.say(f"redis {self.redis.url}, server {self.server.url}, 2 workers")

    def live_worker_names(self) -> list[str]:
        client = redis.Redis.from_url(self.redis.url)
        keys = client.scan_iter("whisperseg:worker:*")
        return [k.decode().split(":", 2)[2] for k in keys]

    def kill_a_worker(self) -> None:
        alive = [p for p in self.workers.running if p.popen.poll() is None]
        victim = self.rng.choice(alive)
        name = next(
            (n for n in self.live_worker_names() if n.startswith(f"whisperseg-{victim.pid}@")),
            f"whisperseg-{victim.pid}@?",
        )
        victim.kill()
        self.kills.append((time.time(), name))
        self.say(f"SIGKILL worker {name}; starting another")
        self.workers.start(1)

    def restart_redis(self) -> None:
        self.say("restarting Redis")
        self.redis.stop()
        time.sleep(2)
        self.redis.start()

    def restart_server(self) -> None:
        self.say("SIGKILL the server; starting it again")
        self.server.kill()
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.kill()
        if self.workers is not None:
            self.workers.stop_all()
        if self.redis is not None:
            self.redis.stop()

    # --- HTTP ---------------------------------------------------------------------------

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        """One request, retried while the server or the broker restarts."""
        deadline = time.monotonic() + 180
        while True:
            try:
                reply = requests.request(method, self.server.url + path, timeout=120, **kwargs)
                if reply.status_code != 503:
                    return reply
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path}: no answer for 3 minutes")
            time.sleep(1)

    def upload(self, seed: int, seconds: float) -> tuple[str, list]:
        audio, truth = make_song(seed=seed, duration=seconds)
        files = {"newAudioFile": ("song.wav", audio_bytes(audio, 32000))}
        reply = self.call("POST", "/upload", files=files)
        reply.raise_for_status()
        return reply.json()["channels"][0]["audio_id"], truth

    def submit(self, kind: str, index: int) -> Job:
        seed, seconds = 100 + index, (10.0 if kind == "finetune" else 150.0)
        while True:  # an upload lost to a server restart before the submit is uploaded again
            audio_id, truth = self.upload(seed, seconds)
            if kind == "finetune":
                name = f"chaos-{index}"
                labels = [
                    {"onset": s.onset, "offset": s.offset, "species": "f", "clustername": s.cluster}
                    for s in truth
                    if s.offset <= seconds
                ]
                body = {
                    "audio_id": audio_id,
                    "annotated_areas": [{"onset": 0, "offset": seconds}],
                    "human_labels": labels,
                    "new_model_name": name,
                }
                reply = self.call("POST", "/finetune-whisperseg", json=body)
            else:
                body = {"audio_id": audio_id, "model_name": "whisperseg-tiny"}
                reply = self.call("POST", "/segmentation-jobs", json=body)
                name = reply.json().get("job_id", "") if reply.ok else ""
            if reply.ok:
                self.say(f"submitted {kind} {name}")
                return Job(kind, name, seed, seconds, time.time())
            if reply.status_code != 404:
                raise RuntimeError(f"submit {kind}: {reply.status_code} {reply.text}")

    def refresh(self, job: Job) -> None:
        if job.kind == "finetune":
            reply = self.call("GET", f"/training-jobs/{job.name}")
            job.state = reply.json()["state"] if reply.ok else f"missing ({reply.status_code})"
        else:
            reply = self.call("GET", f"/segmentation-jobs/{job.name}")
            if reply.ok:
                job.state, job.labels = reply.json()["state"], reply.json()["labels"]
            else:
                job.state = f"missing ({reply.status_code})"


# --- the figures --------------------------------------------------------------------------


def lease_log(url: str) -> list[dict]:
    return [json.loads(e) for e in redis.Redis.from_url(url).lrange(LOG_KEY, 0, -1)]


def intervals(log: list[dict], kills: list[tuple[float, str]], now: float) -> dict:
    """job -> [(start, end, worker)]: from each lease taken to its release, its loss or the
    kill of its worker."""
    killed = {name: at for at, name in kills}
    open_: dict[tuple[str, str], float] = {}
    spans: dict[str, list] = {}
    for entry in log:
        key = (entry.get("job"), entry.get("worker"))
        if entry["event"] == "acquire:ok":
            open_[key] = entry["t"]
        elif entry["event"] in ("release", "lost") and key in open_:
            spans.setdefault(key[0], []).append((open_.pop(key), entry["t"], key[1]))
    for (job, worker), start in open_.items():
        spans.setdefault(job, []).append((start, killed.get(worker, now), worker))
    return spans


def overlapping(spans: dict) -> list[str]:
    doubled = []
    for job, runs in spans.items():
        runs = sorted(runs)
        if any(b[0] < a[1] - 0.001 for a, b in zip(runs, runs[1:], strict=False)):
            doubled.append(job)
    return doubled


def after_kills(
    log: list[dict], spans: dict, kills: list[tuple[float, str]], now: float
) -> tuple[float, float]:
    """(longest kill of a job's worker to its requeue: the time it stayed assigned to a dead
    worker; longest kill to its next start, queueing behind other jobs included)."""
    requeued: dict[str, list[float]] = {}
    for entry in log:
        if entry["event"] == "requeue":
            requeued.setdefault(entry["job"], []).append(entry["t"])
    assigned = running = 0.0
    for at, name in kills:
        for job, runs in spans.items():
            if not any(w == name and s <= at <= e + 0.5 for s, e, w in runs):
                continue
            handed = [t for t in requeued.get(job, []) if t > at]
            later = [s for s, _, w in runs if s > at]
            first_start = min(later) if later else now
            assigned = max(assigned, (min(handed) if handed else first_start) - at)
            running = max(running, first_start - at)
    return assigned, running


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--finetune-steps", type=int, default=9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drain-minutes", type=float, default=15.0, help="wait for the jobs")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="chaos-"))
    chaos = Chaos(root, args.finetune_steps, rng)
    jobs: list[Job] = []
    try:
        chaos.start()
        duration = args.minutes * 60
        start = time.time()
        kinds = ["finetune" if i % 2 == 0 else "segment" for i in range(args.jobs)]
        submit_at = [start + i * duration / 2 / args.jobs for i in range(args.jobs)]
        next_kill = start + rng.uniform(60, 120)
        redis_at, server_at = start + 0.4 * duration, start + 0.65 * duration
        redis_done = server_done = False
        while time.time() < start + duration:
            now = time.time()
            while submit_at and submit_at[0] <= now:
                submit_at.pop(0)
                jobs.append(chaos.submit(kinds[len(jobs)], len(jobs)))
            if now >= next_kill:
                chaos.kill_a_worker()
                next_kill = time.time() + rng.uniform(60, 120)
            elif not redis_done and now >= redis_at:
                chaos.restart_redis()
                redis_done = True
            elif not server_done and now >= server_at:
                chaos.restart_server()
                server_done = True
            time.sleep(1)
        while submit_at:
            submit_at.pop(0)
            jobs.append(chaos.submit(kinds[len(jobs)], len(jobs)))
        chaos.say("chaos over; waiting for the jobs to end")
        deadline = time.time() + args.drain_minutes * 60
        while time.time() < deadline:
            for job in jobs:
                chaos.refresh(job)
            if all(j.state in ENDED or j.state.startswith("missing") for j in jobs):
                break
            time.sleep(5)
        now = time.time()
        log = lease_log(chaos.redis.url)
        spans = intervals(log, chaos.kills, now)
        doubled = overlapping(spans)
        assigned, running = after_kills(log, spans, chaos.kills, now)

        # every finished model loads
        from whisperseg.model import WhisperSegModel

        loads = []
        for job in jobs:
            if job.kind == "finetune" and job.state == "done":
                try:
                    WhisperSegModel.load(root / "models" / job.name, device="cpu")
                    loads.append(True)
                except Exception as exc:
                    chaos.say(f"model {job.name} does not load: {exc}")
                    loads.append(False)
        # every segmentation job's labels equal an undisturbed run's (same audio, calm)
        same = []
        for job in jobs:
            if job.kind != "segment" or job.state != "done":
                continue
            calm = chaos.submit("segment", job.seed - 100)
            while calm.state not in ENDED:
                time.sleep(2)
                chaos.refresh(calm)
            same.append(calm.labels == job.labels)
            if calm.labels != job.labels:
                chaos.say(
                    f"segmentation {job.name}: {len(job.labels)} labels, calm run "
                    f"{len(calm.labels)}"
                )

        states = [j.state for j in jobs]
        print()
        print(
            f"minutes of chaos: {args.minutes:g}; worker kills: {len(chaos.kills)}; "
            f"Redis restarts: {int(redis_done)}; server restarts: {int(server_done)}"
        )
        print(
            f"jobs submitted: {len(jobs)} "
            f"({kinds.count('finetune')} finetune, {kinds.count('segment')} segmentation)"
        )
        print(
            f"done: {states.count('done')}; failed: {states.count('failed')}; "
            f"other: {[s for s in states if s not in ('done', 'failed')]}"
        )
        print(f"jobs run more than once at the same time: {len(doubled)} {doubled or ''}")
        print(f"longest time a job stayed assigned to a dead worker: {assigned:.1f} s")
        print(f"longest time from a kill to the job running again: {running:.1f} s")
        print(f"finished models that load: {sum(loads)} of {len(loads)}")
        print(
            f"segmentation jobs whose labels equal an undisturbed run's: {sum(same)} of {len(same)}"
        )
        print(f"attempts (lease takes) per job: { {j: len(r) for j, r in sorted(spans.items())} }")
        ok = not doubled and all(loads) and all(same) and states.count("done") == len(jobs)
        return 0 if ok else 1
    finally:
        chaos.stop()
        print(f"logs under {root}")


if __name__ == "__main__":
    sys.exit(main())
