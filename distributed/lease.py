"""Leases on running jobs: a lost worker is noticed in seconds, not after the visibility timeout.

Every finetuning and segmentation job sent to the workers is registered in Redis
(``whisperseg:job:<id>``, a hash: the task, its message, its queue, its **generation**,
the workers lost so far). Each delivery of its message carries the generation it was sent
with. A worker that receives it takes the job's **lease** (``whisperseg:lease:<id>``, a key
holding who runs it, expiring after ``lease_ttl_s``) in one atomic step that also checks the
generation, and renews it every ``lease_renew_s`` from a thread of the process running the
job. A delivery is dropped, not run, when

- its generation is not the job's current one (the broker handing out, after the visibility
  timeout, the message of an attempt that was already replaced), or
- the job is leased by a live worker (a message redelivered while its job still runs), or
- the job has ended.

So a job never runs twice at once, however long it runs. A **watch** (:class:`LeaseWatch`,
run by the server and by every worker, one at a time under ``whisperseg:watch-lock``) looks
at the jobs in ``whisperseg:running`` every few seconds: one whose lease has lapsed lost its
worker. The watch bumps the job's generation and forgets the holder in one atomic step (so
only one watcher acts, and only if nobody renewed meanwhile), writes what happened into the
job's record (finetuning: ``job.json``'s ``history``; segmentation: an event), and sends the
message again with the new generation; after :data:`MAX_ATTEMPTS` lost workers the job fails
instead. Right after Redis itself restarted, lapsed leases are given one lease time to be
renewed before anyone is declared lost (a restart after a long outage finds every lease
expired).

A worker whose renewal fails because the job was handed on (it was frozen, or cut off from
Redis longer than the lease) stops the job and writes nothing more for it: its record writes
are fenced (:class:`LeasedJobStore`), its segmentation events are pushed only while it holds
the lease.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from celery import Celery

from distributed.app import CPU_QUEUE, GPU_QUEUE
from distributed.state import KEEP_S, PREFIX, SharedState, events_key
from jobs.record import JobRecord
from jobs.store import JobStore
from whisperseg.durable import utc_timestamp

log = logging.getLogger(__name__)

DEFAULT_LEASE_TTL_S = 30.0
DEFAULT_LEASE_RENEW_S = 5.0
DEFAULT_CHECK_S = 5.0
# A job whose worker was lost this many times is not handed out again: it may be what
# kills its workers (memory).
MAX_ATTEMPTS = 3

RUNNING_KEY = f"{PREFIX}running"  # hash: job id -> its holder's lease value
WATCH_LOCK = f"{PREFIX}watch-lock"
LOG_KEY = f"{PREFIX}lease-log"  # capped list: who took, gave back, lost which job when
LOG_KEEP = 10_000

FINETUNE, SEGMENT = "finetune", "segment"


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def lease_key(job_id: str) -> str:
    return f"{PREFIX}lease:{job_id}"


_ACQUIRE = """
local gen = redis.call('HGET', KEYS[1], 'generation')
if not gen then return {'unknown', false} end
if redis.call('HGET', KEYS[1], 'ended') == '1' then return {'ended', false} end
if gen ~= ARGV[2] then return {'stale', false} end
local current = redis.call('GET', KEYS[2])
if current then return {'busy', current} end
local previous = redis.call('HGET', KEYS[3], ARGV[1])
if previous then redis.call('HINCRBY', KEYS[1], 'lost', 1) end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return {'ok', previous}
"""

_RENEW = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if current then return 0 end
if redis.call('HGET', KEYS[2], 'generation') ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[1])
return 2
"""

_RELEASE = """
local held = redis.call('GET', KEYS[1]) == ARGV[1]
if held then redis.call('DEL', KEYS[1]) end
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
if held and ARGV[3] == '1' then redis.call('HSET', KEYS[3], 'ended', '1') end
if held then return 1 end
return 0
"""

_TAKE_OVER = """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return -2 end
redis.call('HDEL', KEYS[3], ARGV[1])
if not redis.call('HGET', KEYS[1], 'generation') then return -3 end
if redis.call('HGET', KEYS[1], 'ended') == '1' then return -3 end
redis.call('HINCRBY', KEYS[1], 'lost', 1)
return redis.call('HINCRBY', KEYS[1], 'generation', 1)
"""

_PUSH_IF_HELD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def audit(client: redis.Redis, **entry) -> None:
    """Append to the lease log (benches and people read it: who ran what, when)."""
    line = json.dumps({"t": time.time(), **entry})
    try:
        client.pipeline().rpush(LOG_KEY, line).ltrim(LOG_KEY, -LOG_KEEP, -1).execute()
    except redis.RedisError:
        log.warning("could not write the lease log", exc_info=True)


# --- the server's side: jobs are registered before their first message is sent ----------


def register_job(
    client: redis.Redis,
    job_id: str,
    kind: str,
    task: str,
    message: dict,
    queue: str,
    wants_gpu: bool,
    name: str,
    meta: dict | None = None,
) -> dict:
    """Record a new job (generation 1); the message to send, carrying its lease token."""
    fields = {
        "kind": kind,
        "task": task,
        "task_id": job_id,
        "message": json.dumps(message),
        "queue": queue,
        "wants_gpu": int(wants_gpu),
        "name": name,
        "meta": json.dumps(meta or {}),
        "generation": 1,
        "lost": 0,
        "ended": 0,
        "created": utc_timestamp(),
    }
    key = job_key(job_id)
    client.pipeline().hset(key, mapping=fields).expire(key, KEEP_S).execute()
    return {**message, "lease": {"job": job_id, "generation": 1}}


def forget_job(client: redis.Redis, job_id: str) -> None:
    client.delete(job_key(job_id))


def end_job(client: redis.Redis, job_id: str) -> None:
    """No delivery of this job runs any more (it finished, failed or was cancelled)."""
    key = job_key(job_id)
    if client.exists(key):
        client.hset(key, "ended", 1)


def job_info(client: redis.Redis, job_id: str) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in client.hgetall(job_key(job_id)).items()}


def jobs_of_kind(client: redis.Redis, kind: str) -> list[tuple[str, dict[str, str]]]:
    """(id, fields) of every registered job of ``kind`` Redis still keeps."""
    found = []
    for key in client.scan_iter(job_key("*"), count=500):
        job_id = _text(key)[len(job_key("")) :]
        info = job_info(client, job_id)
        if info.get("kind") == kind:
            found.append((job_id, info))
    return found


# --- the worker's side: take the lease, keep it, give it back -----------------------------


@dataclass(frozen=True)
class LeaseTimes:
    ttl_s: float = DEFAULT_LEASE_TTL_S
    renew_s: float = DEFAULT_LEASE_RENEW_S


class Lease:
    """This process's hold on one job, renewed by a thread until :meth:`release`."""

    def __init__(self, client: redis.Redis, job_id: str, value: str, times: LeaseTimes):
        self.client, self.job_id, self.value, self.times = client, job_id, value, times
        self.holder = json.loads(value)
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._renewed_at = time.monotonic()
        self._thread = threading.Thread(target=self._renew_loop, name="lease", daemon=True)

    @classmethod
    def acquire(
        cls,
        client: redis.Redis,
        token: dict,
        worker: str,
        kind: str,
        name: str,
        times: LeaseTimes,
    ) -> tuple[Lease | None, str, dict | None]:
        """(the lease or None, why: ok|stale|busy|ended|unknown, the previous holder).

        The previous holder is the lost worker whose lapsed lease this one replaces
        without the watch having handed the job on (a redelivery came first)."""
        job_id, generation = token["job"], int(token["generation"])
        value = json.dumps(
            {
                "job": job_id,
                "kind": kind,
                "name": name,
                "worker": worker,
                "generation": generation,
                "since": utc_timestamp(),
                "ttl_s": times.ttl_s,
                "nonce": uuid.uuid4().hex[:8],
            }
        )
        keys = [job_key(job_id), lease_key(job_id), RUNNING_KEY]
        args = [job_id, generation, value, round(times.ttl_s * 1000)]
        outcome, previous = client.eval(_ACQUIRE, len(keys), *keys, *args)
        outcome, previous = _text(outcome), _text(previous)
        audit(client, event=f"acquire:{outcome}", job=job_id, worker=worker, generation=generation)
        if outcome != "ok":
            return None, outcome, json.loads(previous) if previous else None
        lease = cls(client, job_id, value, times)
        lease._thread.start()
        return lease, outcome, json.loads(previous) if previous else None

    @property
    def lost(self) -> bool:
        """The job was handed on (or this worker could not renew for a whole lease)."""
        stale = time.monotonic() - self._renewed_at > self.times.ttl_s
        return self._lost.is_set() or stale

    def held(self) -> bool:
        """Asked of Redis now: whether this worker still holds the lease."""
        if self.lost:
            return False
        try:
            return _text(self.client.get(lease_key(self.job_id))) == self.value
        except redis.RedisError:
            return False

    def push_event(self, run_id: str, event: dict) -> bool:
        """Append a segmentation event only while holding the lease (fenced)."""
        keys = [lease_key(self.job_id), events_key(run_id)]
        pushed = self.client.eval(_PUSH_IF_HELD, 2, *keys, self.value, json.dumps(event), KEEP_S)
        if not pushed:
            self._lost.set()
        return bool(pushed)

    def release(self, ended: bool) -> None:
        """Stop renewing; ``ended``: give the job back, no delivery of it runs again. A job
        that stopped unfinished (its lease was lost) is left to lapse, so the watch hands it
        on unless another worker already has it."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
        if not ended:
            audit(self.client, event="lost", job=self.job_id, worker=self.holder["worker"])
            return
        keys = [lease_key(self.job_id), RUNNING_KEY, job_key(self.job_id)]
        try:
            self.client.eval(_RELEASE, 3, *keys, self.value, self.job_id, int(ended))
        except redis.RedisError:
            log.warning("could not release the lease of %s (it lapses)", self.job_id)
        audit(self.client, event="release", job=self.job_id, worker=self.holder["worker"])

    def _renew_loop(self) -> None:
        keys = [lease_key(self.job_id), job_key(self.job_id), RUNNING_KEY]
        ttl_ms, generation = round(self.times.ttl_s * 1000), self.holder["generation"]
        while not self._stop.wait(self.times.renew_s):
            try:
                renewed = self.client.eval(
                    _RENEW, 3, *keys, self.value, ttl_ms, generation, self.job_id
                )
            except redis.RedisError:
                log.warning("could not renew the lease of %s", self.job_id, exc_info=True)
                continue
            if renewed == 0:
                log.warning("job %s was handed to another worker: stopping it", self.job_id)
                audit(self.client, event="lost", job=self.job_id, worker=self.holder["worker"])
                self._lost.set()
                return
            if renewed == 2:
                log.warning("lease of %s had lapsed; taken back", self.job_id)
            self._renewed_at = time.monotonic()


class LeasedJobStore(JobStore):
    """A JobStore whose writes stop once the lease is lost: a worker that lost its job to
    another never overwrites the other's record or installs a model over it."""

    def __init__(self, models_dir: Path, lease: Lease, write_interval_s: float = 1.0):
        super().__init__(models_dir, write_interval_s)
        self.lease = lease

    def save(self, record: JobRecord, folder: Path | None = None) -> None:
        if self.lease.lost:
            log.warning("not writing %s: its lease was lost", record.name)
            return
        super().save(record, folder)

    def install(self, staging: Path, name: str) -> None:
        if not self.lease.held():
            log.warning("not installing %s: its lease was lost", name)
            shutil.rmtree(staging, ignore_errors=True)
            return
        super().install(staging, name)


# --- the watch: who notices a lapsed lease, and hands the job on ---------------------------


class LeaseWatch:
    """Hands the jobs of lost workers on; run by the server and every worker, one at a time."""

    def __init__(
        self,
        app: Celery,
        state: SharedState,
        store: JobStore,
        owner: str,
        check_s: float = DEFAULT_CHECK_S,
    ):
        self.app, self.state, self.store, self.owner = app, state, store, owner
        self.check_s = check_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def client(self) -> redis.Redis:
        return self.state.client

    def start(self) -> LeaseWatch:
        self._thread = threading.Thread(target=self._loop, name="lease-watch", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.check_s):
            try:
                self.check()
            except Exception:
                log.warning("lease watch failed", exc_info=True)

    def check(self) -> list[str]:
        """One look at the running jobs (if no other watcher is looking); what it did."""
        lock_ms = max(1000, round(self.check_s * 2000))
        token = f"{self.owner}:{uuid.uuid4().hex[:8]}"
        if not self.client.set(WATCH_LOCK, token, nx=True, px=lock_ms):
            return []
        try:
            return self._look()
        finally:
            self.client.eval(_UNLOCK, 1, WATCH_LOCK, token)

    def _look(self) -> list[str]:
        running = {_text(k): _text(v) for k, v in self.client.hgetall(RUNNING_KEY).items()}
        if not running:
            return []
        ids = list(running)
        pipe = self.client.pipeline()
        for job_id in ids:
            pipe.exists(lease_key(job_id))
        alive = dict(zip(ids, pipe.execute(), strict=True))
        uptime = float(self.client.info("server")["uptime_in_seconds"])
        done = []
        for job_id in ids:
            if alive[job_id]:
                continue
            holder = json.loads(running[job_id])
            if uptime < float(holder.get("ttl_s", DEFAULT_LEASE_TTL_S)):
                continue  # Redis restarted: its workers get one lease time to renew
            keys = [job_key(job_id), lease_key(job_id), RUNNING_KEY]
            generation = self.client.eval(_TAKE_OVER, 3, *keys, job_id, running[job_id])
            if generation < 0:
                continue  # renewed, taken, or handled by another watcher meanwhile
            done.append(self._hand_on(job_id, holder, int(generation)))
        return done

    def _hand_on(self, job_id: str, holder: dict, generation: int) -> str:
        info = job_info(self.client, job_id)
        lost, worker, at = int(info.get("lost", 1)), holder["worker"], utc_timestamp()
        note = f"requeued: worker {worker} lost at {at}"
        audit(self.client, event="requeue", job=job_id, worker=worker, generation=generation)
        give_up = lost >= MAX_ATTEMPTS
        cancelled = self.state.cancel_requested(job_id)
        if info.get("kind") == FINETUNE:
            record = self.store.load(info.get("name", ""))
            if record is None or not record.active:
                end_job(self.client, job_id)
                return f"{job_id}: already ended"
            if cancelled:
                record.history.append(f"cancelled: worker {worker} lost at {at}")
                record.finish("cancelled")
            elif give_up:
                record.history.append(f"failed: worker {worker} lost at {at}, {lost} lost")
                record.finish("failed", f"its worker was lost {lost} times")
            else:
                queue = self.queue_for(info.get("wants_gpu") == "1")
                record.history.append(note)
                record.state, record.eta_s, record.queue = "queued", None, queue
            self.store.save(record)
        else:
            event = {"kind": "requeued", "worker": worker, "at": at, "generation": generation}
            self.state.push_event(job_id, event)
            if cancelled:
                self.state.push_event(job_id, {"kind": "cancelled"})
            elif give_up:
                error = f"its worker was lost {lost} times"
                self.state.push_event(job_id, {"kind": "failed", "error": error})
        if cancelled or give_up:
            end_job(self.client, job_id)
            log.warning("job %s: worker %s lost; not handed on", job_id, worker)
            return f"{job_id}: ended ({'cancelled' if cancelled else 'failed'})"
        self.send(job_id, info, generation)
        log.warning("job %s: %s; sent again (generation %d)", job_id, note, generation)
        return f"{job_id}: {note}"

    def queue_for(self, wants_gpu: bool) -> str:
        if wants_gpu and GPU_QUEUE in self.state.live_queues():
            return GPU_QUEUE
        return CPU_QUEUE

    def send(self, job_id: str, info: dict[str, str], generation: int) -> None:
        token = {"job": job_id, "generation": generation}
        message = {**json.loads(info["message"]), "lease": token}
        queue = self.queue_for(info.get("wants_gpu") == "1")
        self.client.hset(job_key(job_id), "queue", queue)
        self.app.send_task(
            info["task"],
            args=[message],
            queue=queue,
            task_id=info.get("task_id") or job_id,
            retry=False,
            ignore_result=True,
        )


# --- what people see ------------------------------------------------------------------------


def live_workers(state: SharedState) -> list[dict]:
    """Every worker whose heartbeat is live: name, queues, device, last heartbeat, its jobs."""
    client = state.client
    running = [json.loads(_text(v)) for v in client.hvals(RUNNING_KEY)]
    workers = []
    for name, entry in state.heartbeats().items():
        jobs = [h for h in running if h.get("worker") == name]
        workers.append(
            {
                "name": name,
                "queues": entry.get("queues", []),
                "device": entry.get("device"),
                "last_heartbeat": entry.get("beat_at"),
                "jobs": [{"kind": h["kind"], "name": h["name"], "since": h["since"]} for h in jobs],
            }
        )
    return sorted(workers, key=lambda w: w["name"])


class Cluster:
    """The server's view of the workers, and its share of the watch; ``broker`` is a
    ``distributed.broker.Broker`` of its own, closed with it."""

    def __init__(self, broker, store: JobStore, check_s: float = DEFAULT_CHECK_S):
        self.broker = broker
        self.watch = LeaseWatch(broker.app, broker.state, store, "server", check_s).start()

    def workers(self) -> list[dict]:
        return self.broker.reachable(lambda: live_workers(self.broker.state))

    def close(self) -> None:
        self.watch.close()
        self.broker.close()


def waiting_note(queue: str | None, live: Callable[[], set[str]]) -> str | None:
    """Why a queued job has not started: no live worker serves its queue (None if one does)."""
    if queue is None:
        return None
    try:
        served = live()
    except redis.RedisError:
        return None
    if queue in served:
        return None
    return f"waiting for a worker: no live worker serves the {queue!r} queue"
