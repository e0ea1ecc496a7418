"""Label Studio's ML-backend protocol through Flask's test client (no Label Studio running).

Predictions use the energy baseline here (fast); ``test_real_label_studio.py`` drives the
same routes from a real Label Studio with the shipped model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
from api_helpers import audio_bytes, serve_http, tone, upload
from flask import Flask
from flask.testing import FlaskClient

from jobs.record import JobRecord
from label_studio_backend.ls_api import LabelStudioApi
from label_studio_backend.projects import ProjectModels
from label_studio_backend.routes import reason_phrase
from whisperseg.adaptation import Validation

CONFIG = """<View><Audio name="audio" value="$audio"/>
<Labels name="label" toName="audio"><Label value="call"/></Labels></View>"""
SR = 16000


def song() -> bytes:
    """Three loud 0.3 s tones in 3 s of near silence: the energy baseline finds them."""
    samples = np.zeros(3 * SR, dtype=np.float32)
    for start in (0.4, 1.3, 2.2):
        i = int(start * SR)
        samples[i : i + int(0.3 * SR)] = tone(2000, 0.3, SR)
    return audio_bytes(samples, SR, subtype="PCM_16")


SONG = song()


class AudioFiles(BaseHTTPRequestHandler):
    """/song.wav is audio; /text.wav is not; anything else is 404."""

    expected_auth: str | None = None

    def do_GET(self) -> None:
        if self.expected_auth and self.headers.get("Authorization") != self.expected_auth:
            self.send_response(401)
            self.end_headers()
            return
        body = {"song.wav": SONG, "text.wav": b"not audio at all"}.get(self.path.rsplit("/")[-1])
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args) -> None:
        pass


class LabelStudioFiles(AudioFiles):
    expected_auth = "Token secret-token"


@pytest.fixture
def ls_app(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Flask]:
    """``make_app`` whose Label Studio projects start on the energy baseline."""
    monkeypatch.setenv("WHISPERSEG_LABEL_STUDIO_MODEL", "energy-threshold")

    def build(**overrides) -> Flask:
        return make_app(**overrides)

    return build


def predict(client: FlaskClient, *urls: str, config: str = CONFIG, project: str = "7.1700000000"):
    tasks = [{"id": i + 1, "data": {"audio": url}, "project": 7} for i, url in enumerate(urls)]
    return client.post(
        "/label-studio/predict",
        json={"tasks": tasks, "project": project, "label_config": config, "params": {}},
    )


def test_health_and_setup_answer_what_label_studio_checks(ls_app) -> None:
    client = ls_app().test_client()
    assert client.get("/label-studio/health").json == {"status": "UP", "model_class": "WhisperSeg"}
    reply = client.post(
        "/label-studio/setup",
        json={"project": "7.1700000000", "schema": CONFIG, "hostname": "http://localhost:8080",
              "access_token": "x", "extra_params": None},
    )  # fmt: skip
    assert reply.status_code == 200
    assert reply.json == {"model_version": "energy-threshold"}


def test_an_unknown_labelling_config_is_refused_with_the_reason_in_the_status_line(ls_app) -> None:
    client = ls_app().test_client()
    image = '<View><Image name="image" value="$image"/></View>'
    for reply in (
        client.post("/label-studio/setup", json={"project": "7.1", "schema": image}),
        predict(client, "http://example.org/a.wav", config=image),
    ):
        assert reply.status_code == 400
        assert "no <Audio>" in reply.json["error"]
        assert reply.status == "400 " + reason_phrase(reply.json["error"])


def test_predictions_are_the_segments_get_labels_gives(ls_app) -> None:
    client = ls_app(allow_private_urls=True).test_client()
    with serve_http(AudioFiles) as base:
        reply = predict(client, base + "/song.wav")
    assert reply.status_code == 200, reply.json
    (task,) = reply.json["results"]
    assert task["model_version"] == reply.json["model_version"] == "energy-threshold"
    regions = [(r["value"]["start"], r["value"]["end"]) for r in task["result"]]
    audio_id = upload(client, SONG).json["channels"][0]["audio_id"]
    labels = client.post(
        "/get-labels", json={"audio_id": audio_id, "model_name": "energy-threshold"}
    ).json["labels"]
    assert regions == [(label["onset"], label["offset"]) for label in labels]
    assert len(regions) == 3
    for region in task["result"]:
        assert region["from_name"] == "label" and region["to_name"] == "audio"
        assert region["type"] == "labels" and region["value"]["labels"] == ["call"]
        assert region["value"]["channel"] == 0 and 0 <= region["score"] <= 1
    assert task["score"] == min(r["score"] for r in task["result"])


def test_a_bad_task_gets_an_error_item_and_the_others_their_predictions(ls_app) -> None:
    client = ls_app(allow_private_urls=True).test_client()
    with serve_http(AudioFiles) as base:
        closed = "http://127.0.0.1:9/song.wav"  # the discard port: nothing listens
        reply = predict(
            client, base + "/missing.wav", closed, base + "/text.wav", "ftp://x/a.wav",
            base + "/song.wav",
        )  # fmt: skip
    assert reply.status_code == 200, reply.json
    missing, unreachable, text, ftp, good = reply.json["results"]
    assert "result" not in missing and "HTTP 404" in missing["error"]
    assert missing["task"] == 1 and missing["error"].startswith("Task 1: ")
    assert "Could not fetch" in unreachable["error"]
    assert "result" not in text and text["error"]
    assert "only http(s) URLs" in ftp["error"]
    assert len(good["result"]) == 3


def test_an_audio_url_on_a_private_address_is_refused_as_upload_by_url_does(ls_app) -> None:
    client = ls_app().test_client()
    (refused,) = predict(client, "http://127.0.0.1:8080/song.wav").json["results"]
    assert "loopback" in refused["error"] and "allow_private_urls" in refused["error"]
    (missing,) = predict(client, "").json["results"]
    assert "no audio URL under the data key 'audio'" in missing["error"]


def test_files_label_studio_serves_are_fetched_with_its_token(ls_app, monkeypatch) -> None:
    with serve_http(LabelStudioFiles) as base:
        monkeypatch.setenv("LABEL_STUDIO_URL", base)
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", "secret-token")
        client = ls_app().test_client()  # loopback refused for other URLs, not for Label Studio
        served = predict(client, "/data/upload/7/song.wav", base + "/data/upload/7/song.wav")
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", "wrong-token")
        refused = predict(ls_app().test_client(), "/data/upload/7/song.wav")
    assert [len(t["result"]) for t in served.json["results"]] == [3, 3]
    assert "HTTP 401" in refused.json["results"][0]["error"]


def test_files_label_studio_serves_need_its_url(ls_app) -> None:
    (task,) = predict(ls_app().test_client(), "/data/upload/7/song.wav").json["results"]
    assert "LABEL_STUDIO_URL" in task["error"]


def test_other_webhook_events_are_ignored(ls_app) -> None:
    reply = (
        ls_app()
        .test_client()
        .post("/label-studio/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 7}})
    )
    assert reply.status_code == 201 and reply.json["status"] == "ignored"


def test_training_needs_label_studio_s_url(ls_app) -> None:
    reply = (
        ls_app()
        .test_client()
        .post("/label-studio/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
    )
    assert reply.status_code == 400 and "LABEL_STUDIO_URL" in reply.json["error"]


@pytest.fixture
def fake_label_studio(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Label Studio's API as the adapter reads it, answering from a dict."""
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://label-studio.invalid")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "secret-token")
    project = {"label_config": CONFIG, "tasks": []}
    monkeypatch.setattr(LabelStudioApi, "label_config", lambda self, pid: project["label_config"])
    monkeypatch.setattr(LabelStudioApi, "annotated_tasks", lambda self, pid: project["tasks"])
    return project


def test_a_project_with_no_annotations_to_train_on_is_refused(ls_app, fake_label_studio) -> None:
    client = ls_app().test_client()
    cancelled = {"id": 1, "data": {"audio": "x"}, "annotations": [{"was_cancelled": True}]}
    for tasks in ([], [cancelled]):
        fake_label_studio["tasks"] = tasks
        reply = client.post(
            "/label-studio/webhook", json={"action": "START_TRAINING", "project": {"id": 7}}
        )
        assert reply.status_code == 400
        assert "Project 7 has no annotations to train on" in reply.json["error"]


@dataclass
class FakeJobs:
    """A job backend that records submissions and lets the test end them."""

    records: dict[str, JobRecord] = field(default_factory=dict)
    submitted: list[tuple] = field(default_factory=list)

    def submit(self, name, initial_model, examples, owner=None, request=None, config=None):
        self.submitted.append((name, initial_model, examples, request, config))
        self.records[name] = JobRecord.new(name, initial_model, owner, request)
        return self.records[name]

    def job(self, name: str) -> JobRecord | None:
        return self.records.get(name)


def test_the_train_trigger_queues_one_job_with_the_annotated_regions(
    ls_app, fake_label_studio, monkeypatch
) -> None:
    app = ls_app(allow_private_urls=True, finetune_max_steps=6)
    jobs = FakeJobs()
    for name in ("submit", "job"):
        monkeypatch.setattr(app.extensions["whisperseg"].training, name, getattr(jobs, name))
    client = app.test_client()
    with serve_http(AudioFiles) as base:
        region = {"from_name": "label", "to_name": "audio", "type": "labels"}
        fake_label_studio["tasks"] = [
            {"id": 1, "data": {"audio": base + "/song.wav"}, "annotations": [{"id": 5, "result": [
                {**region, "value": {"start": 0.4, "end": 0.7, "labels": ["call"]}},
                {**region, "value": {"start": 1.3, "end": 1.6, "labels": ["call"]}},
                {"from_name": "other", "value": {"start": 2, "end": 3, "labels": ["x"]}},
            ]}]},
        ]  # fmt: skip
        first = client.post("/label-studio/train", json={"project": "7.1700000000"})
        again = client.post(
            "/label-studio/webhook", json={"action": "START_TRAINING", "project": {"id": 7}}
        )
    assert first.status_code == 201, first.json
    assert first.json["job"] == "label-studio-7-1"
    assert again.json["job"] == "label-studio-7-1" and "already queued" in again.json["message"]
    ((name, initial, examples, request, config),) = jobs.submitted
    assert initial == "energy-threshold" and request["label_studio_tasks"] == [1]
    (example,) = examples  # the whole task is the annotated area
    assert example.duration == pytest.approx(3.0)
    assert [(s.onset, s.offset) for s in example.segments] == [(0.4, 0.7), (1.3, 1.6)]
    assert config.training.max_steps + config.final_steps == 6

    status = client.post("/label-studio/job_status", json={"job": name}).json
    assert status["job_status"] == "queued" and status["model_version"] is None
    jobs.records[name].state = "done"
    jobs.records[name].validation = _validation("better")
    assert client.post("/label-studio/job_status", json={"job": name}).json["job_status"] == (
        "finished"
    )
    setup = client.post("/label-studio/setup", json={"project": "7.1", "schema": CONFIG})
    assert setup.status_code == 404  # the fake job made no model folder: it is not usable
    unknown = client.post("/label-studio/job_status", json={"job": "nope"})
    assert unknown.status_code == 410


def test_a_project_takes_the_new_model_only_when_the_verdict_is_better(tmp_path: Path) -> None:
    jobs = FakeJobs()
    projects = ProjectModels(tmp_path / "p.json", jobs, lambda: "base")
    for n, (state, verdict, model) in enumerate(
        [("done", "not better", "base"), ("failed", None, "base"), ("done", "better", "new-3")],
        start=1,
    ):
        name = "new-3" if n == 3 else f"job-{n}"
        jobs.submit(name, "base", [])
        projects.started(1, name)
        assert projects.model(1) == "base" and projects.active_job(1) is not None
        jobs.records[name].state = state
        jobs.records[name].validation = _validation(verdict) if verdict else None
        assert projects.model(1) == model
    assert projects.state(1).last_verdict == "better"
    again = ProjectModels(tmp_path / "p.json", jobs, lambda: "base")
    assert again.model(1) == "new-3" and again.model(2) == "base"
    assert again.next_job_name(1, lambda name: True) == "label-studio-1-4"


def test_reason_phrases_are_one_line_of_printable_ascii() -> None:
    assert reason_phrase("a\nb\r\n  c\x00 é") == "a b c ?"
    assert len(reason_phrase("x" * 1000)) == 300
    assert reason_phrase("") == "Error"


def _validation(verdict: str) -> Validation:
    return Validation(0.5, 0.9, 0.3, 0.01, False, 3.0, 10, verdict)
