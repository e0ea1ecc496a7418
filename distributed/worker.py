"""``python finetune_worker.py --broker URL --models-dir DIR --data-dir DIR``: a Celery worker.

It serves the ``gpu`` and ``cpu`` queues when the machine has a GPU, else ``cpu``
(``--queues`` chooses), with ``--concurrency`` processes of ``--torch-threads`` threads
each, and says so every few seconds in a Redis heartbeat, which is how a server learns
that a GPU worker is there. ``--models-dir`` and ``--data-dir`` must be the server's
folders, shared (NFS or the like) when the worker runs on another machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
from pathlib import Path

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from distributed import shared_audio
from distributed.app import CPU_QUEUE, DEFAULT_VISIBILITY_TIMEOUT_S, GPU_QUEUE, celery_app
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
        help="seconds before a lost worker's job goes to another; longer than the longest job",
    )
    parser.add_argument("--loglevel", default="INFO")
    return parser


class Heartbeat:
    """Refreshes this worker's heartbeat key until the worker shuts down."""

    def __init__(self, state: SharedState, name: str, queues: list[str]):
        self.state, self.name, self.queues = state, name, queues
        self._stop = threading.Event()

    def start(self, **_) -> None:
        threading.Thread(target=self._run, name="heartbeat", daemon=True).start()

    def stop(self, **_) -> None:
        self._stop.set()
        self.state.forget_worker(self.name)

    def _run(self) -> None:
        while True:
            try:
                self.state.beat(self.name, self.queues)
            except Exception:
                log.warning("heartbeat failed", exc_info=True)
            if self._stop.wait(HEARTBEAT_EVERY_S):
                return


def default_queues(device: str | None) -> list[str]:
    import torch

    has_gpu = device != "cpu" and torch.cuda.is_available()
    return [GPU_QUEUE, CPU_QUEUE] if has_gpu else [CPU_QUEUE]


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
    register(app, WorkerContext(name, registry, audio_dir, state, jobs, args.device))

    def set_threads(**_) -> None:
        import torch

        torch.set_num_threads(threads)

    heartbeat = Heartbeat(state, name, queues)
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
