"""The server killed (SIGKILL) and started again while its jobs run on workers: it reports
them with their true state and progress, and they finish. A finetuning job's record lives in
its folder; a segmentation job is taken up again from its registration and events in Redis."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests
from api_helpers import audio_bytes
from test_faults import JOB_STEPS

from example_audios.make_example_song import make_song
from tests.support.live_server import LiveServer, link_shipped_model
from tests.support.local_cluster import RedisServer, Workers, wait_until

pytestmark = pytest.mark.slow


def test_a_killed_and_restarted_server_reports_and_finishes_its_jobs(
    tmp_path: Path, redis_server: RedisServer, saved_tiny_model: Path
) -> None:
    root = tmp_path / "server"
    assert link_shipped_model(root / "models")
    shutil.copytree(saved_tiny_model, root / "models" / "tiny")  # quick to finetune
    env = {
        "WHISPERSEG_BROKER_URL": redis_server.url,
        "WHISPERSEG_FINETUNE_MAX_STEPS": str(JOB_STEPS),
        "WHISPERSEG_LEASE_CHECK_S": "1",
    }
    workers = Workers(redis_server.url, root / "models", root / "data", tmp_path / "logs")
    server = LiveServer(root, env, launcher="python")
    try:
        workers.start(2, "--lease-ttl-s", "4", "--lease-renew-s", "1")
        server.start()
        url = server.url
        song, truth = make_song(seed=3, duration=150.0)
        files = {"newAudioFile": ("song.wav", audio_bytes(song, 32000))}
        audio_id = requests.post(url + "/upload", files=files, timeout=60).json()["channels"][0][
            "audio_id"
        ]
        labels = [
            {"onset": s.onset, "offset": s.offset, "species": "finch", "clustername": s.cluster}
            for s in truth
            if s.offset <= 10
        ]
        body = {
            "audio_id": audio_id,
            "annotated_areas": [{"onset": 0, "offset": 10}],
            "human_labels": labels,
            "new_model_name": "kept",
            "initial_model_name": "tiny",
        }
        assert requests.post(url + "/finetune-whisperseg", json=body, timeout=60).ok
        segment = {"audio_id": audio_id, "model_name": "whisperseg-tiny"}
        job_id = requests.post(url + "/segmentation-jobs", json=segment, timeout=60).json()[
            "job_id"
        ]

        def finetune() -> dict:
            return requests.get(server.url + "/training-jobs/kept", timeout=30).json()

        def segmentation() -> dict:
            return requests.get(server.url + f"/segmentation-jobs/{job_id}", timeout=30).json()

        wait_until(lambda: finetune()["progress"] > 0.05, 300, "training to be under way")
        wait_until(lambda: segmentation()["progress"] > 0, 300, "a first chunk")
        before = (finetune()["progress"], segmentation()["progress"])
        server.kill()
        server.start()

        after_finetune, after_segmentation = finetune(), segmentation()
        assert after_finetune["state"] in ("training", "done"), after_finetune
        assert after_finetune["progress"] >= before[0]
        assert after_finetune["attempts"] == 1  # the restart did not touch the job
        assert after_segmentation["state"] in ("running", "done"), after_segmentation
        assert after_segmentation["progress"] >= before[1]
        assert after_segmentation["labels"]  # the chunks done before the restart

        wait_until(lambda: finetune()["state"] == "done", 600, "the finetuning job to finish")
        wait_until(lambda: segmentation()["state"] == "done", 600, "the segmentation to finish")
        final = segmentation()
        assert final["progress"] == 1.0 and len(final["labels"]) >= len(
            after_segmentation["labels"]
        )
        models = requests.post(url + "/list-models-available-for-inference", json={}, timeout=30)
        assert "kept" in [m["model_name"] for m in models.json()["response"]]
    finally:
        server.kill()
        workers.stop_all()
        print(workers.logs_tail())
