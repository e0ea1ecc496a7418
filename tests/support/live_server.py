"""Run the real server as an operator does, on a free loopback port, for benches and tests.

``LiveServer`` starts ``gunicorn --workers 1 --threads 8 'backend:create_app_from_env()'`` (the
documented production command) or ``python backend.py``, configured only through
``WHISPERSEG_*`` environment variables, with its data and models folders under one root
folder. It can be killed with SIGKILL (master and worker at once, as a crash or the OOM killer
would) and started again on the same folders.

    with LiveServer(Path("/tmp/run"), {"WHISPERSEG_MAX_UPLOAD_MB": "1"}) as server:
        requests.get(server.url + "/get-status")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import requests

PROJECT = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = PROJECT / "models" / "whisperseg-tiny"
SHARED_DATA = PROJECT.parent / "shared" / "data"
GUNICORN_APP = "backend:create_app_from_env()"
Launcher = Literal["gunicorn", "python"]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def link_shipped_model(models_dir: Path) -> bool:
    """Link the shipped model into ``models_dir`` (so trained models stay out of the project)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    link = models_dir / SHIPPED_MODEL.name
    if not (SHIPPED_MODEL / "config.json").is_file():
        return False
    if not link.exists():
        link.symlink_to(SHIPPED_MODEL, target_is_directory=True)
    return True


def wait_for_shipped_model(timeout_s: float) -> None:
    """Wait while the shipped model is still being trained (it appears when training ends)."""
    deadline = time.monotonic() + timeout_s
    while not (SHIPPED_MODEL / "config.json").is_file():
        if time.monotonic() > deadline:
            raise SystemExit(f"the shipped model {SHIPPED_MODEL} did not appear")
        print(f"waiting for {SHIPPED_MODEL} ...", flush=True)
        time.sleep(30)


def spawn(command: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``command`` in a process group of its own (so a kill reaches its children),
    its output appended to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_until_answering(
    process: subprocess.Popen, answers: Callable[[], bool], timeout_s: float, what: str
) -> None:
    """Poll ``answers()`` (False or a connection error: not yet) until it is True; raises
    when ``process`` exits or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start")
        try:
            if answers():
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer within {timeout_s} s")


def kill_group(process: subprocess.Popen | None) -> None:
    """SIGKILL the whole process group: no shutdown code runs, as in a crash."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def stop_group(process: subprocess.Popen | None, grace_s: float = 30) -> None:
    """Graceful stop of the process group (SIGTERM), SIGKILL after ``grace_s``."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        kill_group(process)


def proc_status_kib(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` memory figure in KiB (VmRSS: now, VmHWM: peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss(pid: int) -> None:
    """Make VmHWM start again from the current RSS (Linux: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class LiveServer:
    """One server process tree; ``env`` adds or overrides ``WHISPERSEG_*`` settings."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    launcher: Launcher = "gunicorn"
    threads: int = 8
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def command(self) -> list[str]:
        if self.launcher == "python":
            return [sys.executable, "backend.py"]
        return [
            sys.executable, "-m", "gunicorn", "--workers", "1", "--threads", str(self.threads),
            "--bind", f"127.0.0.1:{self.port}", GUNICORN_APP,
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "WHISPERSEG_DATA_DIR": str(self.root / "data"),
            "WHISPERSEG_MODELS_DIR": str(self.root / "models"),
            "WHISPERSEG_PORT": str(self.port),
            **self.env,
        }

    def start(self, timeout_s: float = 180) -> None:
        """Start and wait until /get-status answers; the server's output goes to server.log."""
        (self.root / "models").mkdir(parents=True, exist_ok=True)
        self.process = spawn(self.command(), PROJECT, self.environment(), self.log_path)

        def answers() -> bool:  # gunicorn accepts connections before its worker has the app
            return requests.get(self.url + "/get-status", timeout=5).ok

        try:
            wait_until_answering(self.process, answers, timeout_s, f"server ({self.log_path})")
        except BaseException:
            self.kill()  # never leave a half-started server behind
            raise

    def kill(self) -> None:
        """SIGKILL the whole process group (the gunicorn worker too), as in a crash."""
        kill_group(self.process)

    def stop(self) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it takes longer than 30 s."""
        stop_group(self.process)

    def serving_pid(self) -> int:
        """The process holding the audio: gunicorn's (only) worker, else the server itself."""
        assert self.process is not None
        if self.launcher == "python":
            return self.process.pid
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:  # fields[1] is the parent pid
                return int(stat.parent.name)
        raise RuntimeError("gunicorn has no worker process")

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
