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

log = logging.getLogger(__name__)

PREFIX = "whisperseg:"
HEARTBEAT_EVERY_S = 5.0
HEARTBEAT_TTL_S = 3 * HEARTBEAT_EVERY_S
KEEP_S = 7 * 24 * 3600  # flags and events outlive any job, then expire


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

    def beat(self, worker: str, queues: list[str]) -> None:
        entry = json.dumps({"queues": queues})
        self.client.set(f"{PREFIX}worker:{worker}", entry, ex=round(HEARTBEAT_TTL_S))

    def forget_worker(self, worker: str) -> None:
        self.client.delete(f"{PREFIX}worker:{worker}")

    def live_queues(self) -> set[str]:
        """The queues served by workers whose heartbeat has not expired."""
        keys = list(self.client.scan_iter(f"{PREFIX}worker:*"))
        entries = self.client.mget(keys) if keys else []
        return {q for entry in entries if entry for q in json.loads(entry)["queues"]}

    def push_event(self, run_id: str, event: dict) -> None:
        key = f"{PREFIX}run:{run_id}"
        self.client.pipeline().rpush(key, json.dumps(event)).expire(key, KEEP_S).execute()

    def events(self, run_id: str, start: int = 0) -> list[dict]:
        return [json.loads(e) for e in self.client.lrange(f"{PREFIX}run:{run_id}", start, -1)]

    def forget_events(self, run_id: str) -> None:
        """Delete a followed run's events (its cancel flag stays for a worker yet to start)."""
        self.client.delete(f"{PREFIX}run:{run_id}")
