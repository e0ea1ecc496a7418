"""A real Label Studio uses this server as its ML backend, end to end (slow: minutes).

Label Studio (its own virtual environment, made once: ``tests/support/label_studio.py``)
and this server (gunicorn, ``LiveServer``) run on the loopback. Through Label Studio's API
(``label-studio-sdk``) the test makes a project with the audio config, imports 5 tasks of
10 s of real Bengalese finch song from ``../shared/data`` (uploaded: ``/data/upload/...``),
connects this server, and asks Label Studio for predictions; then it annotates three tasks
with their human labels, presses Label Studio's train trigger and waits for the job here.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import soundfile as sf

from tests.support.label_studio import LabelStudioServer
from tests.support.live_server import LiveServer, link_shipped_model

pytestmark = pytest.mark.slow

SPECIES = "bengalese_finch"
SECONDS = 10.0
TASKS = 5
ANNOTATED = 3  # tasks annotated for training
TYPES = [str(n) for n in range(9)]  # the data set's syllable types
CONFIG = (
    '<View><Audio name="audio" value="$audio"/><Labels name="label" toName="audio">'
    + "".join(f'<Label value="{t}"/>' for t in TYPES)
    + "</Labels></View>"
)
FINETUNE_STEPS = 30  # enough to name the syllable types (the verdict is on them)


def clips(shared_data: Path) -> list[tuple[str, bytes, list[tuple[float, float, str]]]]:
    """(file name, the first 10 s as 16-bit WAV, its human labels) of 5 recordings."""
    chosen = []
    for wav in sorted((shared_data / SPECIES).glob("*.wav")):
        if sf.info(wav).duration < SECONDS:
            continue
        samples, sr = sf.read(wav, dtype="int16")
        buffer = io.BytesIO()
        sf.write(buffer, samples[: int(SECONDS * sr)], sr, format="WAV", subtype="PCM_16")
        truth = json.loads(wav.with_suffix(".json").read_text())
        labels = [
            (on, min(off, SECONDS), c)
            for on, off, c in zip(truth["onset"], truth["offset"], truth["cluster"], strict=True)
            if on < SECONDS - 0.01
        ]
        chosen.append((wav.name, buffer.getvalue(), labels))
        if len(chosen) == TASKS:
            return chosen
    raise AssertionError(f"fewer than {TASKS} recordings of {SECONDS} s in {SPECIES}")


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    server = LabelStudioServer(tmp_path_factory.mktemp("label-studio"))
    server.start()
    yield server
    server.stop()
    print(server.log_tail())


@pytest.fixture(scope="module")
def whisperseg(
    tmp_path_factory: pytest.TempPathFactory, label_studio: LabelStudioServer
) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("whisperseg")
    if not link_shipped_model(root / "models"):
        pytest.skip("the shipped model is not there")
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        "WHISPERSEG_FINETUNE_MAX_STEPS": str(FINETUNE_STEPS),
    }
    server = LiveServer(root, env)
    server.start()
    yield server
    server.stop()
    print(server.log_path.read_text(errors="replace")[-4000:])


def get_labels(server: LiveServer, wav: bytes, model: str | None = None) -> list[dict]:
    upload = requests.post(
        server.url + "/upload", files={"newAudioFile": ("clip.wav", wav)}, timeout=120
    )
    upload.raise_for_status()
    audio_id = upload.json()["channels"][0]["audio_id"]
    body = {"audio_id": audio_id, "model_name": model}
    reply = requests.post(server.url + "/get-labels", json=body, timeout=300)
    reply.raise_for_status()
    return reply.json()["labels"]


def regions_of(prediction) -> list[tuple[float, float]]:
    return [(r["value"]["start"], r["value"]["end"]) for r in prediction.result]


def retrieve_predictions(client, project: int, task_ids: list[int]) -> float:
    """Label Studio's own "Retrieve predictions" action; seconds until it has stored them."""
    started = time.monotonic()
    client.actions.create(
        id="retrieve_tasks_predictions",
        project=project,
        selected_items={"all": False, "included": task_ids},
    )
    return time.monotonic() - started


def test_label_studio_predicts_and_trains_through_this_server(
    label_studio: LabelStudioServer, whisperseg: LiveServer, shared_data: Path
) -> None:
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token, timeout=900)
    recordings = clips(shared_data)

    project = client.projects.create(title="WhisperSeg test", label_config=CONFIG)
    files = [(name, (name, wav, "audio/wav")) for name, wav, _ in recordings]
    imported = requests.post(
        f"{label_studio.url}/api/projects/{project.id}/import",
        headers=label_studio.auth_headers,
        files=files,
        timeout=120,
    )
    assert imported.status_code == 201, imported.text
    tasks = sorted(client.tasks.list(project=project.id), key=lambda t: t.id)
    assert len(tasks) == TASKS
    assert all(t.data["audio"].startswith("/data/upload/") for t in tasks)
    by_name = {name: (wav, labels) for name, wav, labels in recordings}
    task_clip = {
        t.id: by_name[next(n for n in by_name if t.data["audio"].endswith(n))] for t in tasks
    }

    backend = client.ml.create(
        project=project.id, url=whisperseg.url + "/label-studio", title="WhisperSeg", timeout=900
    )
    assert backend.model_version == "whisperseg-tiny", backend
    get_labels(whisperseg, recordings[0][1])  # the model is loaded before the measurement

    # Label Studio's request for predictions stores the regions /get-labels gives.
    seconds = retrieve_predictions(client, project.id, [t.id for t in tasks])
    print(f"\n{TASKS} tasks of {SECONDS:g} s: {seconds:.2f} s from request to stored predictions")
    for task in tasks:
        (prediction,) = client.predictions.list(task=task.id)
        assert prediction.model_version == "whisperseg-tiny"
        expected = get_labels(whisperseg, task_clip[task.id][0])
        assert regions_of(prediction) == [(lb["onset"], lb["offset"]) for lb in expected]
        scores = [r["score"] for r in prediction.result]
        assert prediction.score == pytest.approx(min(scores, default=0.0))
        assert all(r["value"]["labels"][0] in TYPES for r in prediction.result)

    # Annotations made through the API and Label Studio's train trigger start one job here.
    for task in tasks[:ANNOTATED]:
        result = [
            {"from_name": "label", "to_name": "audio", "type": "labels",
             "value": {"start": on, "end": off, "channel": 0, "labels": [cluster]}}
            for on, off, cluster in task_clip[task.id][1]
        ]  # fmt: skip
        client.annotations.create(id=task.id, result=result)
    client.ml.train(id=backend.id)
    job_name = f"label-studio-{project.id}-1"
    job = wait_for_job(whisperseg, job_name, timeout_s=900)
    assert job["state"] == "done", job
    assert job["validation"]["verdict"] == "better", job["validation"]

    # After the job, new predictions name the new model version.
    client.ml.get(id=backend.id)
    unannotated = tasks[-1]
    retrieve_predictions(client, project.id, [unannotated.id])
    newest = max(client.predictions.list(task=unannotated.id), key=lambda p: p.id)
    assert newest.model_version == job_name
    expected = get_labels(whisperseg, task_clip[unannotated.id][0], model=job_name)
    assert regions_of(newest) == [(lb["onset"], lb["offset"]) for lb in expected]


def wait_for_job(server: LiveServer, name: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reply = requests.get(f"{server.url}/training-jobs/{name}", timeout=30)
        if reply.ok and reply.json()["state"] in ("done", "failed", "cancelled"):
            return reply.json()
        time.sleep(2)
    raise AssertionError(f"job {name} did not end within {timeout_s} s")
