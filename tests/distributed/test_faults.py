"""Distributed mode under faults: a worker killed mid-job, cancels across processes, a broker
that is down or restarts. Real Redis, real worker processes (``tests/support/local_cluster.py``);
leases are in ``test_leases.py``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from api_helpers import audio_bytes, upload
from flask import Flask
from flask.testing import FlaskClient

from example_audios.make_example_song import make_song
from tests.support.local_cluster import RedisServer, Workers, free_port, wait_until

SONG_SECONDS = 10.0
# Finetuning jobs start from the random tiny model (conftest's ``tiny_initial_model``), so
# their length is their step count: these tests are about how jobs run, not what they learn.
pytestmark = pytest.mark.usefixtures("tiny_initial_model")
JOB_STEPS = 300  # about 10 s on one thread: long enough to kill a worker mid-job


def song_request(client: FlaskClient, name: str) -> dict:
    """A finetuning request on a freshly uploaded song, labelled throughout."""
    audio, truth = make_song(seed=2, duration=SONG_SECONDS)
    reply = upload(client, audio_bytes(audio, 32000))
    assert reply.status_code == 201, reply.get_json()
    labels = [
        {"onset": s.onset, "offset": s.offset, "species": "finch", "clustername": s.cluster}
        for s in truth
        if s.offset <= SONG_SECONDS
    ]
    return {
        "audio_id": reply.get_json()["channels"][0]["audio_id"],
        "annotated_areas": [{"onset": 0, "offset": SONG_SECONDS}],
        "human_labels": labels,
        "new_model_name": name,
        "initial_model_name": "tiny",
    }


def job(client: FlaskClient, name: str) -> dict:
    reply = client.get(f"/training-jobs/{name}")
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def inference_models(client: FlaskClient) -> list[str]:
    reply = client.post("/list-models-available-for-inference")
    return [m["model_name"] for m in reply.get_json()["response"]]


@pytest.mark.slow
def test_a_job_whose_worker_is_killed_finishes_on_the_other_worker(
    make_app: Callable[..., Flask], workers: Workers
) -> None:
    workers.start(2, "--visibility-timeout-s", "10")
    client = make_app(broker_url=workers.broker_url, finetune_max_steps=JOB_STEPS).test_client()
    assert (
        client.post("/finetune-whisperseg", json=song_request(client, "hardy")).status_code == 201
    )
    wait_until(lambda: job(client, "hardy")["progress"] > 0.1, 300, "training to be under way")
    on_disk = json.loads((workers.models_dir / "hardy" / "job.json").read_text())
    first = on_disk["worker"]
    # the whole worker: main process and pool, as a machine dying would
    workers.by_name(first).kill()

    ended = lambda: job(client, "hardy")["state"] not in ("queued", "training")  # noqa: E731
    wait_until(ended, 600, "the job to end")
    done = job(client, "hardy")
    assert done["state"] == "done", done
    assert done["attempts"] == 2
    on_disk = json.loads((workers.models_dir / "hardy" / "job.json").read_text())
    assert on_disk["worker"] != first and on_disk["attempts"] == 2
    assert "hardy" in inference_models(client)
    audio_id = song_request(client, "unused")["audio_id"]
    labels = client.post("/get-labels", json={"audio_id": audio_id, "model_name": "hardy"})
    assert labels.status_code == 201


@pytest.mark.slow
def test_cancel_reaches_the_worker_and_a_queued_job_never_starts(
    make_app: Callable[..., Flask], workers: Workers
) -> None:
    workers.start(1)
    client = make_app(broker_url=workers.broker_url, finetune_max_steps=5000).test_client()
    for name in ("long", "waiting"):
        assert (
            client.post("/finetune-whisperseg", json=song_request(client, name)).status_code == 201
        )
    wait_until(lambda: job(client, "long")["progress"] > 0, 300, "training to be under way")
    assert job(client, "waiting")["state"] == "queued"

    reply = client.post("/cancel-finetuning", json={"model_name": "waiting"})
    assert reply.status_code == 201 and reply.get_json()["job"]["state"] == "cancelled"
    assert client.post("/cancel-finetuning", json={"model_name": "long"}).status_code == 201
    wait_until(lambda: job(client, "long")["state"] == "cancelled", 120, "the worker to stop")

    # the worker is free again and skips the cancelled job: a new one runs next
    assert (
        client.post("/finetune-whisperseg", json=song_request(client, "after")).status_code == 201
    )
    wait_until(lambda: job(client, "after")["state"] == "training", 300, "the next job to start")
    assert job(client, "waiting")["attempts"] == 0  # never started
    assert not (workers.models_dir / "long" / "model.safetensors").exists()
    assert "long" not in inference_models(client)


def test_a_broker_that_is_down_gives_503_and_leaves_no_job(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    client = make_app(broker_url=f"redis://127.0.0.1:{free_port()}/0").test_client()
    before = sorted(p.name for p in (tmp_path / "models").iterdir())
    request = song_request(client, "nowhere")
    reply = client.post("/finetune-whisperseg", json=request)
    assert reply.status_code == 503, reply.get_json()
    assert "broker" in reply.get_json()["error"] and "unreachable" in reply.get_json()["error"]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == before
    assert client.get("/training-jobs").get_json() == {"jobs": []}
    assert client.get("/training-jobs/nowhere").status_code == 404

    body = {"audio_id": request["audio_id"], "model_name": "energy-threshold"}
    reply = client.post("/segmentation-jobs", json=body)
    assert reply.status_code == 503 and "broker" in reply.get_json()["error"]
    assert client.post("/get-labels", json=body).status_code == 201  # answered in the server
    assert client.post("/finetune-whisperseg", json=request).status_code == 503  # name still free


@pytest.mark.slow
def test_a_broker_restart_loses_no_queued_job(
    make_app: Callable[..., Flask], workers: Workers, redis_server: RedisServer
) -> None:
    client = make_app(broker_url=redis_server.url, finetune_max_steps=3).test_client()
    assert client.post("/finetune-whisperseg", json=song_request(client, "kept")).status_code == 201
    redis_server.stop()  # no worker has taken the job yet
    redis_server.start()
    workers.start(1)
    wait_until(lambda: job(client, "kept")["state"] == "done", 300, "the queued job to run")
