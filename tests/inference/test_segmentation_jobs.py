"""Segmentation jobs and kept predictions, as a notebook or the frontend sees them over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from api_helpers import audio_bytes, upload
from flask import Flask
from flask.testing import FlaskClient

from example_audios.make_example_song import make_song
from whisperseg import segmenters
from whisperseg.metrics import evaluate_files
from whisperseg.segment import Segment

ENERGY = "energy-threshold"


class SegmenterSpy:
    """Counts the energy segmenter's calls; with ``gated``, each call waits for a release."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gated: bool = False):
        self.calls = 0
        self.gated = gated
        self.allowed = threading.Semaphore(0)
        real = segmenters.EnergySegmenter.segment

        def segment(segmenter, audio, sr):
            self.calls += 1
            if self.gated:
                assert self.allowed.acquire(timeout=30), "the test never released this chunk"
            return real(segmenter, audio, sr)

        monkeypatch.setattr(segmenters.EnergySegmenter, "segment", segment)

    def release(self, chunks: int = 1) -> None:
        for _ in range(chunks):
            self.allowed.release()


def upload_song(client: FlaskClient, seconds: float, seed: int = 5) -> str:
    audio, _ = make_song(seed=seed, duration=seconds)
    reply = upload(client, audio_bytes(audio, 32000))
    assert reply.status_code == 201, reply.json
    return reply.json["channels"][0]["audio_id"]


def get_labels(client: FlaskClient, audio_id: str, **extra) -> list[dict]:
    reply = client.post("/get-labels", json={"audio_id": audio_id, "model_name": ENERGY, **extra})
    assert reply.status_code == 201, reply.json
    return reply.json["labels"]


def job(client: FlaskClient, job_id: str) -> dict:
    reply = client.get(f"/segmentation-jobs/{job_id}")
    assert reply.status_code == 200, reply.json
    return reply.json


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def long_song(client: FlaskClient) -> str:
    """Four minutes of song: four chunks for the energy segmenter."""
    return upload_song(client, 240.0)


def test_a_job_shows_rising_progress_and_partial_labels_then_what_get_labels_gives(
    client: FlaskClient, long_song: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = SegmenterSpy(monkeypatch, gated=True)
    reply = client.post("/segmentation-jobs", json={"audio_id": long_song, "model_name": ENERGY})
    assert reply.status_code == 201
    job_id = reply.json["job_id"]
    seen = [job(client, job_id)]
    for _ in range(3):
        spy.release()  # one more chunk
        wait_until(lambda: job(client, job_id)["progress"] > seen[-1]["progress"])
        seen.append(job(client, job_id))
    seen = seen[1:]
    assert [s["state"] for s in seen] == ["running"] * 3
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress) and 0 < progress[0] < progress[-1] < 1
    assert seen[-1]["eta"] != "--:--:--"
    partial = [len(s["labels"]) for s in seen]
    assert partial == sorted(partial) and partial[-1] > 0
    spy.release(10)
    wait_until(lambda: job(client, job_id)["state"] == "done")
    done = job(client, job_id)
    assert done["progress"] == 1.0 and done["error"] is None
    assert done["labels"][: partial[-1]] == seen[-1]["labels"]  # partial labels stay as they were

    calls = spy.calls
    assert get_labels(client, long_song) == done["labels"]
    assert spy.calls == calls, "get-labels segmented again instead of using the kept run"


def test_the_second_get_labels_is_answered_from_kept_predictions(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = SegmenterSpy(monkeypatch)
    audio_id = upload_song(client, 10.0)
    first = get_labels(client, audio_id)
    assert spy.calls == 1 and first
    areas = {"annotated_areas": [{"onset": 0, "offset": 5}], "human_labels": []}
    assert get_labels(client, audio_id) == first
    merged = get_labels(client, audio_id, **areas)  # the merge rule still applies
    assert merged == [x for x in first if x["onset"] >= 5]
    assert spy.calls == 1
    get_labels(client, audio_id, min_frequency=3000)  # other settings: segmented anew
    assert spy.calls == 2


def test_concurrent_identical_get_labels_run_the_model_once(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    audio_id = upload_song(app.test_client(), 10.0)
    spy = SegmenterSpy(monkeypatch, gated=True)
    with ThreadPoolExecutor(4) as pool:
        replies = [pool.submit(get_labels, app.test_client(), audio_id) for _ in range(4)]
        wait_until(lambda: spy.calls == 1)
        time.sleep(0.2)  # the other three requests are waiting, not segmenting
        spy.release()
        results = [r.result(timeout=30) for r in replies]
    assert spy.calls == 1
    assert all(r == results[0] for r in results) and results[0]


def test_cancel_a_running_job(
    client: FlaskClient, long_song: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = SegmenterSpy(monkeypatch, gated=True)
    job_id = client.post("/segmentation-jobs", json={"audio_id": long_song, "model_name": ENERGY})
    job_id = job_id.json["job_id"]
    wait_until(lambda: spy.calls == 1)
    reply = client.post(f"/segmentation-jobs/{job_id}/cancel")
    assert reply.status_code == 201
    spy.release(10)
    wait_until(lambda: job(client, job_id)["state"] == "cancelled")
    assert spy.calls == 1  # stopped after the chunk it was in
    # asking again starts afresh rather than answering from the cancelled run
    assert get_labels(client, long_song)


def test_unknown_jobs_and_audio_are_404(jobs_client: FlaskClient) -> None:
    client = jobs_client
    assert client.get("/segmentation-jobs/nope").status_code == 404
    assert client.post("/segmentation-jobs/nope/cancel").status_code == 404
    reply = client.post("/segmentation-jobs", json={"audio_id": "gone", "model_name": ENERGY})
    assert reply.status_code == 404
    reply = client.post("/segmentation-jobs", json={"audio_id": "gone", "model_name": "nope"})
    assert reply.status_code == 404


def test_releasing_the_audio_drops_its_predictions(jobs_client: FlaskClient) -> None:
    client = jobs_client
    audio_id = upload_song(client, 10.0)
    get_labels(client, audio_id)
    kept = client.post("/segmentation-jobs", json={"audio_id": audio_id, "model_name": ENERGY})
    job_id = kept.json["job_id"]
    assert job(client, job_id)["state"] == "done"  # the get-labels run, kept
    client.post("/release-audio-given-ids", json={"audio_id_list": [audio_id]})
    assert client.get(f"/segmentation-jobs/{job_id}").status_code == 404


@pytest.fixture
def three_hour_wav(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Three hours of 32 kHz 16-bit mono: a quiet recording with a few calls, made cheaply
    as a WAV header over a sparse file (691 MB on paper)."""
    path = tmp_path_factory.mktemp("long") / "three_hours.wav"
    sr, frames = 32000, 3 * 3600 * 32000
    header = audio_bytes(np.zeros(16, dtype=np.float32), sr, subtype="PCM_16")[:44]
    data_bytes = frames * 2
    header = header[:4] + (36 + data_bytes).to_bytes(4, "little") + header[8:40]
    with open(path, "wb") as handle:
        handle.write(header + data_bytes.to_bytes(4, "little"))
        song, _ = make_song(seed=2, duration=5.0)
        handle.seek(44 + 90 * 60 * sr * 2)  # a song at 1 h 30 min
        handle.write((song * 32767).astype("<i2").tobytes())
        handle.truncate(44 + data_bytes)
    yield path


@pytest.mark.slow
def test_a_three_hour_recording_uploads_and_browses_within_the_budget(
    make_app: Callable[..., Flask], three_hour_wav
) -> None:
    client = make_app(audio_memory_budget_mb=1024).test_client()
    with open(three_hour_wav, "rb") as handle:
        reply = client.post(
            "/upload",
            data={"newAudioFile": (handle, "three_hours.wav")},
            content_type="multipart/form-data",
        )
    assert reply.status_code == 201, reply.json
    [channel] = reply.json["channels"]
    assert channel["audio_duration"] == pytest.approx(3 * 3600)
    assert reply.json["configurations"]["num_spec_columns"] == 1000
    store = client.application.extensions["whisperseg"].audio
    assert store.bytes_used <= 1024 * 2**20
    tile = {"audio_id": channel["audio_id"], "start_time": 5400.0, "hop_length": 320}
    reply = client.post("/get-audio-clip-spec", json=tile)
    assert reply.status_code == 200 and len(reply.json["freqs"]) == 300


@pytest.mark.slow
def test_a_model_segments_a_long_song_in_chunks_as_well_as_in_one_piece(
    jobs_client: FlaskClient,
) -> None:
    """130 s of song take two chunks (100 s and the rest); calls across the chunk edge are
    found once."""
    client = jobs_client
    audio, truth = make_song(seed=9, duration=130.0)
    audio_id = upload(client, audio_bytes(audio, 32000)).json["channels"][0]["audio_id"]
    request = {"audio_id": audio_id, "model_name": "whisperseg-tiny"}
    job_id = client.post("/segmentation-jobs", json=request).json["job_id"]
    progress = [0.0]
    while (state := job(client, job_id))["state"] in ("queued", "running"):
        assert state["progress"] >= progress[-1]
        progress.append(state["progress"])
        time.sleep(0.5)
    assert state["state"] == "done"
    assert any(0 < p < 1 for p in progress), progress  # seen after the first chunk
    labels = state["labels"]
    assert labels == client.post("/get-labels", json=request).json["labels"]
    onsets = [x["onset"] for x in labels]
    assert onsets == sorted(onsets)
    found = [Segment(x["onset"], x["offset"], "v") for x in labels]
    expected = [Segment(s.onset, s.offset, "v") for s in truth]
    scores = evaluate_files([(found, expected)], tolerance=0.02)
    assert scores["segment_f1"] >= 0.8, scores
