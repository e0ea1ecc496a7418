"""The Celery app both sides build from the broker URL: queues, task names, fault settings.

Late acknowledgement: a task's message is acknowledged when the task ends, so a worker
lost mid-job (killed, machine down) leaves it unacknowledged, and the broker hands it to
another worker once the visibility timeout has passed. That timeout must exceed the
longest job, or a job still running would be handed out a second time: the default is
6 hours (Redis's own default, one hour, would run long finetunes twice). A worker child
that dies is noticed at once (``task_reject_on_worker_lost``) and its task requeued.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

DEFAULT_VISIBILITY_TIMEOUT_S = 6 * 3600
GPU_QUEUE, CPU_QUEUE = "gpu", "cpu"

FINETUNE_TASK = "whisperseg.finetune"
SEGMENT_RUN_TASK = "whisperseg.segment_run"
SEGMENT_FILE_TASK = "whisperseg.segment_file"

CONNECT_TIMEOUT_S = 3.0  # a submit to a broker that is down fails in this time (503)


def celery_app(broker_url: str, visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S):
    """An app on ``broker_url`` (Redis), which also keeps the corpus tasks' results."""
    app = Celery("whisperseg", broker=broker_url, backend=broker_url, set_as_current=False)
    # Abandoned messages are looked for every tenth of the timeout (1 s to 1 min).
    restore_every_s = max(1.0, min(60.0, visibility_timeout_s / 10))
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a waiting message would also age towards the timeout
        # No message is taken while the pool is busy, even after a reconnection to the broker
        # (which otherwise resets the prefetch count): a message held but not started by a
        # worker that then dies would have no lease to lapse and wait out the visibility
        # timeout.
        worker_disable_prefetch=True,
        task_ignore_result=True,
        result_expires=24 * 3600,
        task_queues=[Queue(GPU_QUEUE), Queue(CPU_QUEUE)],
        task_default_queue=CPU_QUEUE,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": visibility_timeout_s,
            "unacked_restore_interval": restore_every_s,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "socket_timeout": 30.0,
        },
        result_backend_transport_options={"socket_connect_timeout": CONNECT_TIMEOUT_S},
        worker_hijack_root_logger=False,
    )
    return app
