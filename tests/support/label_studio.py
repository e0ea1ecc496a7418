"""Run a real Label Studio on the loopback, offline, with its own data folder, for tests.

Label Studio cannot share the project's environment (it pins redis<5.3, pytz<2023 and,
through opencv 4.12, numpy<2.3), so it lives in a virtual environment of its own, made once
in a cache folder (``WHISPERSEG_TEST_CACHE``, default ``~/.cache/whisperseg-tests``) with
the version requirements-dev.txt names on its ``# label-studio-venv:`` line. A folder whose
install did not finish has no ``.complete`` marker and is made again. Beside it, a data
folder Label Studio has migrated once (with its user's credentials) is copied for each
server: a fresh folder's migrations take about 40 s on 2 cores, a start on a copy about 5 s.

    with LabelStudioServer(tmp_path / "ls") as ls:
        requests.get(ls.url + "/api/projects", headers=ls.auth_headers)
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.live_server import PROJECT, free_port, spawn, stop_group, wait_until_answering

CACHE = Path(os.environ.get("WHISPERSEG_TEST_CACHE", Path.home() / ".cache" / "whisperseg-tests"))
PIN_LINE = re.compile(r"^#\s*label-studio-venv:\s*(\S+)\s*$", re.MULTILINE)


def label_studio_requirement() -> str:
    """``label-studio==X`` as requirements-dev.txt pins it."""
    match = PIN_LINE.search((PROJECT / "requirements-dev.txt").read_text())
    if not match:
        raise RuntimeError("requirements-dev.txt has no '# label-studio-venv: ...' line")
    return match.group(1)


def label_studio_venv(requirement: str | None = None, timeout_s: float = 1800) -> Path:
    """The virtual environment holding ``requirement``, made now if missing (minutes)."""
    requirement = requirement or label_studio_requirement()
    folder = CACHE / re.sub(r"[^A-Za-z0-9.]+", "-", requirement)
    marker = folder / ".complete"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".label-studio.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one maker at a time (pytest-xdist workers)
        if marker.is_file() and marker.read_text() == requirement:
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run(
            [str(folder / "bin" / "pip"), "install", "--quiet", requirement],
            check=True,
            timeout=timeout_s,
        )
        marker.write_text(requirement)
    return folder


def migrated_data(venv: Path) -> Path:
    """A data folder (``data/``, ``credentials.json``) of Label Studio in ``venv``, migrated
    and holding its user, made now if missing (about 40 s)."""
    folder = venv.with_name(venv.name + "-migrated")
    marker = folder / ".complete"
    with open(CACHE / ".label-studio-migrated.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            server = LabelStudioServer(folder, from_template=False)
            server.start()
            server.stop()
            credentials = {"password": server.password, "token": server.token}
            (folder / "credentials.json").write_text(json.dumps(credentials))
            marker.touch()
    return folder


@dataclass
class LabelStudioServer:
    """One Label Studio process: SQLite and files under ``root``, one user with a token."""

    root: Path
    port: int = field(default_factory=free_port)
    username: str = "tester@example.org"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    token: str = field(default_factory=lambda: secrets.token_hex(20))
    local_files_root: Path | None = None  # served at /data/local-files/?d=<relative path>
    from_template: bool = True  # start on a copy of the migrated data folder (its user)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    @property
    def log_path(self) -> Path:
        return self.root / "label-studio.log"

    def environment(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("LABEL_STUDIO_", "WHISPERSEG_", "PYTHON"))
        }
        env.update(
            {
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.root / "data"),
                "DJANGO_DB": "sqlite",
                "LABEL_STUDIO_USERNAME": self.username,
                "LABEL_STUDIO_PASSWORD": self.password,
                "LABEL_STUDIO_USER_TOKEN": self.token,
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                # Offline: no error reports, analytics, version checks or remote flags.
                "SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "",
                "COLLECT_ANALYTICS": "false",
                "LATEST_VERSION_CHECK": "false",
                "FEATURE_FLAGS_OFFLINE": "true",
                # The ML backend under test listens on the loopback too (the second one
                # lets Label Studio create the backend's /webhook on a loopback URL).
                "ML_BLOCK_LOCAL_IP": "false",
                "USE_DEFAULT_BANNED_SUBNETS": "false",
                # A shared 2-core machine segments slowly: wait for a batch of tasks.
                "ML_TIMEOUT_PREDICT": "900",
                "ML_TIMEOUT_TRAIN": "300",
            }
        )
        if self.local_files_root is not None:
            env["LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"] = "true"
            env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] = str(self.local_files_root)
        return env

    def start(self, timeout_s: float = 600) -> None:
        """Start and wait until its API answers the token (the first start migrates: minutes)."""
        venv = label_studio_venv()
        self.root.mkdir(parents=True, exist_ok=True)
        if self.from_template and not (self.root / "data").exists():
            template = migrated_data(venv)
            shutil.copytree(template / "data", self.root / "data")
            credentials = json.loads((template / "credentials.json").read_text())
            self.password, self.token = credentials["password"], credentials["token"]
        command = [
            str(venv / "bin" / "label-studio"), "start", "--no-browser",
            "--internal-host", "127.0.0.1", "--port", str(self.port), "--host", self.url,
        ]  # fmt: skip
        self.process = spawn(command, self.root, self.environment(), self.log_path)

        def answers() -> bool:
            return requests.get(self.url + "/api/projects", headers=self.auth_headers, timeout=5).ok

        try:
            what = f"Label Studio ({self.log_path})"
            wait_until_answering(self.process, answers, timeout_s, what)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop_group(self.process)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> LabelStudioServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
