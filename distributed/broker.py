"""The server's end of the broker: routes and sends tasks, asks jobs to stop.

Every failure to reach Redis becomes :class:`JobsUnavailable` (503), raised before the
caller has made anything it would have to undo, or with that undo left to the caller.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

import redis
from celery.result import AsyncResult
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url

from distributed import lease
from distributed.app import CPU_QUEUE, GPU_QUEUE, celery_app
from distributed.state import SharedState, redis_client
from jobs.record import JobsUnavailable

T = TypeVar("T")
UNREACHABLE = (redis.RedisError, OperationalError, OSError)


class Broker:
    """Sends jobs to workers: a GPU job to ``gpu`` when a GPU worker is alive, else ``cpu``."""

    def __init__(self, url: str):
        self.url = url
        self.app = celery_app(url)
        self.state = SharedState(redis_client(url))

    def reachable(self, call: Callable[[], T]) -> T:
        """``call()``, with an unreachable broker reported as JobsUnavailable."""
        try:
            return call()
        except UNREACHABLE as exc:
            where = maybe_sanitize_url(self.url)
            raise JobsUnavailable(f"the job broker ({where}) is unreachable: {exc}") from exc

    def queue_for(self, wants_gpu: bool) -> str:
        if wants_gpu and GPU_QUEUE in self.reachable(self.state.live_queues):
            return GPU_QUEUE
        return CPU_QUEUE

    def send(
        self, task: str, message: dict, queue: str, task_id: str, keep_result: bool = False
    ) -> AsyncResult:
        """Send a task; only a kept result can be waited for (jobs report through files
        and events instead)."""
        return self.reachable(
            lambda: self.app.send_task(
                task,
                args=[message],
                queue=queue,
                task_id=task_id,
                retry=False,
                ignore_result=not keep_result,
            )
        )

    def submit_job(
        self,
        job_id: str,
        kind: str,
        task: str,
        message: dict,
        wants_gpu: bool,
        name: str,
        meta: dict | None = None,
        queue: str | None = None,
    ) -> str:
        """Register a leased job (``distributed.lease``) and send its first delivery; the
        queue it went to (``queue``, else the one ``queue_for`` picks). Nothing stays
        registered when the send fails."""
        queue = queue or self.queue_for(wants_gpu)
        client = self.state.client
        args = (client, job_id, kind, task, message, queue, wants_gpu, name, meta)
        leased = self.reachable(lambda: lease.register_job(*args))
        try:
            self.send(task, leased, queue, task_id=job_id)
        except BaseException:
            with contextlib.suppress(*UNREACHABLE):
                lease.forget_job(client, job_id)
            raise
        return queue

    def cancel(self, task_id: str, revoke: bool) -> None:
        """Flag the job (its worker stops at its next step); ``revoke`` also tells the
        workers to drop the message if it is still queued."""
        self.reachable(lambda: self.state.request_cancel(task_id))
        if revoke:
            self.reachable(lambda: self.app.control.revoke(task_id))

    def close(self) -> None:
        self.app.close()
        self.state.client.close()
