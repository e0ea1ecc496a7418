"""Leases on running jobs: a killed worker's job runs again within seconds of its lease
lapsing, a redelivered message never starts a live job twice, a job no live worker can take
says so, and ``/workers`` lists who runs what. Real Redis, real worker processes.

The workers here renew every second and their leases lapse after 4 s (the defaults are 5 s
and 30 s), and the server looks for lapsed leases every second, so no test waits long.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import redis
from api_helpers import audio_bytes, upload
from flask import Flask
from flask.testing import FlaskClient
from test_faults import JOB_STEPS, inference_models, job, song_request

from distributed.lease import LOG_KEY
from example_audios.make_example_song import make_song
from tests.support.local_cluster import RedisServer, Workers, wait_until

FAST_LEASES = ("--lease-ttl-s", "4", "--lease-renew-s", "1")
SERVER = {"lease_check_s": 1.0}
pytestmark = pytest.mark.usefixtures("tiny_initial_model")  # as in test_faults


def lease_log(url: str, job_id: str | None = None) -> list[dict]:
    entries = [json.loads(e) for e in redis.Redis.from_url(url).lrange(LOG_KEY, 0, -1)]
    return [e for e in entries if job_id is None or e.get("job") == job_id]


def submit(client: FlaskClient, name: str) -> None:
    reply = client.post("/finetune-whisperseg", json=song_request(client, name))
    assert reply.status_code == 201, reply.get_json()


def workers_reply(client: FlaskClient) -> list[dict]:
    reply = client.get("/workers")
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()["workers"]


@pytest.mark.slow
def test_a_killed_workers_finetune_runs_again_on_the_other_worker_within_seconds(
    make_app: Callable[..., Flask], workers: Workers
) -> None:
    workers.start(2, *FAST_LEASES)  # the default visibility timeout: 6 hours
    client = make_app(broker_url=workers.broker_url, finetune_max_steps=JOB_STEPS, **SERVER)
    client = client.test_client()
    submit(client, "sturdy")
    wait_until(lambda: job(client, "sturdy")["progress"] > 0.1, 300, "training to be under way")
    first = json.loads((workers.models_dir / "sturdy" / "job.json").read_text())["worker"]
    listed = {w["name"]: w for w in workers_reply(client)}
    assert len(listed) == 2
    assert [j["name"] for j in listed[first]["jobs"]] == ["sturdy"]
    assert listed[first]["queues"] == ["cpu"] and listed[first]["device"] == "cpu"
    assert listed[first]["last_heartbeat"]

    workers.by_name(first).kill()
    killed = time.monotonic()

    def running_elsewhere() -> bool:
        current = job(client, "sturdy")
        on_disk = json.loads((workers.models_dir / "sturdy" / "job.json").read_text())
        return current["state"] == "training" and on_disk["worker"] != first

    wait_until(running_elsewhere, 90, "the job to run again on the other worker")
    took = time.monotonic() - killed
    print(f"running again {took:.1f} s after the kill")
    assert took < 30  # lease 4 s + watch 1 s + the start of a job
    requeued = job(client, "sturdy")
    assert requeued["attempts"] == 2
    assert any(h.startswith(f"requeued: worker {first} lost at ") for h in requeued["history"])

    wait_until(lambda: job(client, "sturdy")["state"] not in ("queued", "training"), 600, "end")
    done = job(client, "sturdy")
    assert done["state"] == "done", done
    assert done["attempts"] == 2
    assert "sturdy" in inference_models(client)
    starts = [e for e in lease_log(workers.broker_url) if e["event"] == "acquire:ok"]
    assert len(starts) == 2 and starts[0]["worker"] == first != starts[1]["worker"]


@pytest.mark.slow
def test_a_killed_workers_segmentation_job_resumes_after_its_reported_chunks(
    make_app: Callable[..., Flask], workers: Workers
) -> None:
    workers.start(2, *FAST_LEASES)
    client = make_app(broker_url=workers.broker_url, **SERVER).test_client()
    audio, _ = make_song(seed=5, duration=130.0)  # 2 chunks: 100 s (20 margins) and the rest
    reply = upload(client, audio_bytes(audio, 32000))
    audio_id = reply.get_json()["channels"][0]["audio_id"]
    body = {"audio_id": audio_id, "model_name": "whisperseg-tiny"}
    job_id = client.post("/segmentation-jobs", json=body).get_json()["job_id"]

    def status() -> dict:
        return client.get(f"/segmentation-jobs/{job_id}").get_json()

    wait_until(lambda: status()["progress"] > 0, 300, "a first chunk")
    runner = next(w["name"] for w in workers_reply(client) if w["jobs"])
    done_before = status()["progress"]
    workers.by_name(runner).kill()

    wait_until(lambda: status()["state"] in ("done", "failed", "cancelled"), 600, "the end")
    final = status()
    assert final["state"] == "done", final
    events = redis.Redis.from_url(workers.broker_url).lrange(f"whisperseg:run:{job_id}", 0, -1)
    events = [json.loads(e) for e in events]
    starts = [e for e in events if e["kind"] == "started"]
    assert [s["worker"] for s in starts][0] == runner and starts[-1]["worker"] != runner
    assert any(e["kind"] == "requeued" for e in events)
    chunks = [e["chunk"] for e in events if e["kind"] == "chunk"]
    assert chunks == sorted(set(chunks)), chunks  # no chunk computed twice
    assert done_before < 1

    # the killed worker's heartbeat lapses (it may outlive a short job), then the labels
    # equal an undisturbed run's
    wait_until(lambda: len(workers_reply(client)) == 1, 60, "the killed worker to go")
    again = make_app(broker_url=None).test_client()
    again_id = upload(again, audio_bytes(audio, 32000)).get_json()["channels"][0]["audio_id"]
    reference = again.post(
        "/get-labels", json={"audio_id": again_id, "model_name": "whisperseg-tiny"}
    ).get_json()["labels"]
    assert len(final["labels"]) == len(reference)
    for got, want in zip(final["labels"], reference, strict=True):
        assert got["clustername"] == want["clustername"]
        assert abs(got["onset"] - want["onset"]) < 0.02
        assert abs(got["offset"] - want["offset"]) < 0.02


@pytest.mark.slow
def test_a_job_running_longer_than_the_visibility_timeout_is_not_started_twice(
    make_app: Callable[..., Flask], workers: Workers
) -> None:
    workers.start(2, "--visibility-timeout-s", "3", *FAST_LEASES)
    client = make_app(broker_url=workers.broker_url, finetune_max_steps=JOB_STEPS, **SERVER)
    client = client.test_client()
    submit(client, "once")
    wait_until(lambda: job(client, "once")["state"] not in ("queued", "training"), 600, "end")
    done = job(client, "once")
    assert done["state"] == "done" and done["attempts"] == 1, done
    entries = lease_log(workers.broker_url)
    assert [e["event"] for e in entries].count("acquire:ok") == 1
    # the broker did hand the message out again, and the other worker dropped it
    assert "acquire:busy" in [e["event"] for e in entries], entries


def test_a_job_no_live_worker_can_take_says_so(
    make_app: Callable[..., Flask], redis_server: RedisServer
) -> None:
    client = make_app(broker_url=redis_server.url, **SERVER).test_client()
    assert client.get("/workers").get_json() == {"workers": []}
    submit(client, "alone")
    queued = job(client, "alone")
    assert queued["state"] == "queued"
    assert queued["last_event"] == "waiting for a worker: no live worker serves the 'cpu' queue"
    assert queued["eta"] == "waiting for a worker"
    listed = client.post("/list-models-training-in-progress", json={}).get_json()["response"]
    assert listed == [{"model_name": "alone", "status": "queued", "eta": "waiting for a worker"}]

    audio, _ = make_song(seed=5, duration=5.0)
    audio_id = upload(client, audio_bytes(audio, 32000)).get_json()["channels"][0]["audio_id"]
    body = {"audio_id": audio_id, "model_name": "whisperseg-tiny"}
    job_id = client.post("/segmentation-jobs", json=body).get_json()["job_id"]
    segmentation = client.get(f"/segmentation-jobs/{job_id}").get_json()
    assert segmentation["state"] == "queued"
    assert segmentation["waiting"] == "waiting for a worker: no live worker serves the 'cpu' queue"
