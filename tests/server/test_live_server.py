"""The real server process: started as the README says, killed mid-training, restarted."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from api_helpers import audio_bytes
from conftest import PROJECT, SHIPPED_MODEL

from example_audios.make_example_song import make_song

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHIPPED_MODEL.is_dir(), reason="shipped model missing"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, tmp_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.models_dir = tmp_path / "models"
        self.models_dir.mkdir(exist_ok=True)
        link = self.models_dir / SHIPPED_MODEL.name
        if not link.exists():
            link.symlink_to(SHIPPED_MODEL, target_is_directory=True)
        self.args = [
            sys.executable, "backend.py", "--port", str(self.port),
            "--data-dir", str(tmp_path / "data"), "--models-dir", str(self.models_dir),
            "--finetune-max-steps", "5000",
        ]  # fmt: skip
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, cwd=PROJECT, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/get-status", timeout=2).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.3)
        raise AssertionError("server did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=120, **kwargs)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path)
    live.start()
    yield live
    if live.process and live.process.poll() is None:
        live.process.send_signal(signal.SIGTERM)
        live.process.wait(timeout=30)


def test_a_restart_during_training_reports_the_job_as_interrupted(server: LiveServer) -> None:
    audio, truth = make_song(seed=8, duration=8.0)
    files = {"newAudioFile": ("song.wav", audio_bytes(audio, 32000))}
    audio_id = server.post("/upload", files=files).json()["channels"][0]["audio_id"]
    labels = [{"onset": s.onset, "offset": s.offset, "clustername": s.cluster} for s in truth]
    request = {
        "audio_id": audio_id,
        "annotated_areas": [{"onset": 0, "offset": 8}],
        "human_labels": labels,
        "new_model_name": "interrupted",
    }
    assert server.post("/finetune-whisperseg", json=request).status_code == 201
    deadline = time.monotonic() + 120
    while requests.get(server.url + "/training-jobs/interrupted").json()["state"] != "training":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    annotations = {"annotations": [{"onset": 1.0, "offset": 2.0, "species": "x"}]}
    assert server.post("/post-annotations/h1", json=annotations).status_code == 201

    server.kill()
    server.start()

    job = requests.get(server.url + "/training-jobs/interrupted").json()
    assert job["state"] == "failed" and job["error"] == "interrupted by a server restart"
    listed = server.post("/list-models-available-for-inference").json()["response"]
    assert "interrupted" not in {m["model_name"] for m in listed}
    assert server.post("/list-models-training-in-progress").json() == {"response": []}
    stored = requests.get(server.url + "//get-annotations/h1").json()
    assert stored[-1]["annotations"] == annotations["annotations"]
    assert os.path.isdir(server.models_dir / "interrupted")  # kept, for the error message
