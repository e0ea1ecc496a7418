"""What server and workers share in Redis beside the queues.

- cancel flags (``whisperseg:cancel:<job>``): set by the server, read by the job's worker
  between training steps or segmentation chunks, so a cancel reaches any machine;
- worker heartbeats (``whisperseg:worker:<name>``, refreshed every few seconds, expiring
  soon after a worker stops): the queues live workers serve, so the server sends a GPU
  job to the ``gpu`` queue only when a GPU worker is there to take it;
- segmentation events (``whisperseg:run:<id>``): a list the worker appends one entry to
  per chunk (progress and segments), read by the server in order.
"""

from __future__ import annotations

import json
import logging

import redis

from distributed.app import CONNECT_TIMEOUT_S
from whisperseg.durable import utc_timestamp

log = logging.getLogger(__name__)

PREFIX = "whisperseg:"
HEARTBEAT_EVERY_S = 5.0
HEARTBEAT_TTL_S = 3 * HEARTBEAT_EVERY_S
KEEP_S = 7 * 24 * 3600  # flags and events outlive any job, then expire


def events_key(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}"


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=30)


class SharedState:
    """Cancel flags, heartbeats and segmentation events on one Redis database."""

    def __init__(self, client: redis.Redis):
        self.client = client

    def request_cancel(self, job_id: str) -> None:
        self.client.set(f"{PREFIX}cancel:{job_id}", 1, ex=KEEP_S)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether the job should stop; False while Redis is unreachable (the job goes on)."""
        try:
            return bool(self.client.exists(f"{PREFIX}cancel:{job_id}"))
        except redis.RedisError:
            log.warning("cannot read the cancel flag of %s", job_id, exc_info=True)
            return False

    def beat(self, worker: str, queues: list[str], device: str | None = None) -> None:
        entry = json.dumps({"queues": queues, "device": device, "beat_at": utc_timestamp()})
        self.client.set(f"{PREFIX}worker:{worker}", entry, ex=round(HEARTBEAT_TTL_S))

    def forget_worker(self, worker: str) -> None:
        self.client.delete(f"{PREFIX}worker:{worker}")

    def heartbeats(self) -> dict[str, dict]:
        """Worker name -> its last heartbeat (queues, device, time), for live workers."""
        keys = list(self.client.scan_iter(f"{PREFIX}worker:*"))
        entries = self.client.mget(keys) if keys else []
        prefix = len(f"{PREFIX}worker:")
        return {
            key.decode()[prefix:]: json.loads(entry)
            for key, entry in zip(keys, entries, strict=True)
            if entry
        }

    def live_queues(self) -> set[str]:
        """The queues served by workers whose heartbeat has not expired."""
        return {q for entry in self.heartbeats().values() for q in entry["queues"]}

    def push_event(self, run_id: str, event: dict) -> None:
        key = events_key(run_id)
        self.client.pipeline().rpush(key, json.dumps(event)).expire(key, KEEP_S).execute()

    def events(self, run_id: str, start: int = 0) -> list[dict]:
        return [json.loads(e) for e in self.client.lrange(events_key(run_id), start, -1)]

    def keep_events(self, run_id: str, seconds: float) -> None:
        """Let an ended run's events go after ``seconds`` (a restarted server reports the
        run from them until then; its cancel flag stays for a worker yet to start)."""
        self.client.expire(events_key(run_id), round(seconds))
