"""``python finetune_worker.py --broker URL --models-dir DIR --data-dir DIR``: a Celery worker.

It serves the ``gpu`` and ``cpu`` queues when the machine has a GPU, else ``cpu``
(``--queues`` chooses), with ``--concurrency`` processes of ``--torch-threads`` threads
each, and says so every few seconds in a Redis heartbeat, which is how a server learns
that a GPU worker is there. It holds a lease on each job it runs, renewed every
``--lease-renew-s`` and lapsing ``--lease-ttl-s`` after its last renewal, and takes its turn
watching for other workers' lapsed leases (``distributed.lease``). ``--models-dir`` and
``--data-dir`` must be the server's folders, shared (NFS or the like) when the worker runs
on another machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import time
from pathlib import Path

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from distributed import shared_audio
from distributed.app import CPU_QUEUE, DEFAULT_VISIBILITY_TIMEOUT_S, GPU_QUEUE, celery_app
from distributed.lease import (
    DEFAULT_LEASE_RENEW_S,
    DEFAULT_LEASE_TTL_S,
    LeaseTimes,
    LeaseWatch,
)
from distributed.state import HEARTBEAT_EVERY_S, SharedState, redis_client
from distributed.tasks import WorkerContext, register
from jobs.store import JobStore
from model_registry import ModelRegistry

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python finetune_worker.py", description=__doc__)
    parser.add_argument("--broker", required=True, help="Redis URL, e.g. redis://host:6379/0")
    parser.add_argument("--models-dir", required=True, type=Path, help="the server's models")
    parser.add_argument("--data-dir", required=True, type=Path, help="the server's data dir")
    parser.add_argument(
        "--queues", help=f"comma-separated (default: {GPU_QUEUE},{CPU_QUEUE} with a GPU, else cpu)"
    )
    parser.add_argument("--concurrency", type=int, default=1, help="jobs at once (processes)")
    parser.add_argument(
        "--torch-threads", type=int, help="per process (default: the cores shared out)"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: GPU if present)")
    parser.add_argument(
        "--visibility-timeout-s",
        type=float,
        default=DEFAULT_VISIBILITY_TIMEOUT_S,
        help="seconds before the broker hands an unacknowledged message out again (a "
        "stale delivery of a job that runs or was handed on is dropped)",
    )
    parser.add_argument(
        "--lease-ttl-s",
        type=float,
        default=DEFAULT_LEASE_TTL_S,
        help="a job whose worker has not renewed its lease this long goes to another worker",
    )
    parser.add_argument(
        "--lease-renew-s",
        type=float,
        default=DEFAULT_LEASE_RENEW_S,
        help="how often a worker renews its jobs' leases and watches for lapsed ones",
    )
    parser.add_argument("--loglevel", default="INFO")
    return parser


class Heartbeat:
    """Refreshes this worker's heartbeat key and takes its turn at the lease watch, until
    the worker shuts down."""

    def __init__(
        self,
        state: SharedState,
        name: str,
        queues: list[str],
        device: str,
        watch: LeaseWatch,
        every_s: float = HEARTBEAT_EVERY_S,
    ):
        self.state, self.name, self.queues, self.device = state, name, queues, device
        self.watch, self.every_s = watch, every_s
        self._stop = threading.Event()

    def start(self, **_) -> None:
        threading.Thread(target=self._run, name="heartbeat", daemon=True).start()

    def stop(self, **_) -> None:
        self._stop.set()
        self.state.forget_worker(self.name)

    def _run(self) -> None:
        last_beat = 0.0
        while True:
            try:
                if time.monotonic() - last_beat >= HEARTBEAT_EVERY_S / 2:
                    self.state.beat(self.name, self.queues, self.device)
                    last_beat = time.monotonic()
                self.watch.check()
            except Exception:
                log.warning("heartbeat or lease watch failed", exc_info=True)
            if self._stop.wait(self.every_s):
                return


def default_queues(device: str | None) -> list[str]:
    import torch

    has_gpu = device != "cpu" and torch.cuda.is_available()
    return [GPU_QUEUE, CPU_QUEUE] if has_gpu else [CPU_QUEUE]


def device_name(device: str | None) -> str:
    """What /workers shows: the asked device, else the GPU's name or ``cpu``."""
    import torch

    if device:
        return device
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.loglevel.upper())
    queues = args.queues.split(",") if args.queues else default_queues(args.device)
    concurrency = max(1, args.concurrency)
    threads = args.torch_threads or max(1, (os.cpu_count() or 1) // concurrency)
    app = celery_app(args.broker, args.visibility_timeout_s)
    state = SharedState(redis_client(args.broker))
    registry = ModelRegistry(args.models_dir, device=args.device)
    name = f"whisperseg-{os.getpid()}@{socket.gethostname()}"
    audio_dir = shared_audio.audio_folder(args.data_dir)
    jobs = JobStore(args.models_dir)
    times = LeaseTimes(args.lease_ttl_s, args.lease_renew_s)
    register(app, WorkerContext(name, registry, audio_dir, state, jobs, args.device, times))

    def set_threads(**_) -> None:
        import torch

        torch.set_num_threads(threads)

    watch = LeaseWatch(app, state, jobs, name, check_s=args.lease_renew_s)
    every_s = min(HEARTBEAT_EVERY_S, args.lease_renew_s)
    heartbeat = Heartbeat(state, name, queues, device_name(args.device), watch, every_s)
    worker_process_init.connect(set_threads, weak=False)
    worker_ready.connect(heartbeat.start, weak=False)
    worker_shutdown.connect(heartbeat.stop, weak=False)
    app.worker_main(
        [
            "worker",
            f"--queues={','.join(queues)}",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            f"--hostname={name}",
            f"--loglevel={args.loglevel}",
            "--without-mingle",
            "--without-gossip",
        ]
    )
