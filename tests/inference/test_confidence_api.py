"""Every predicted segment carries ``confidence`` in [0, 1]: get-labels, segmentation jobs,
exports; a person's label has 1.0."""

from __future__ import annotations

import csv
import io
import time

from api_helpers import audio_bytes, upload
from flask.testing import FlaskClient

from example_audios.make_example_song import make_song

ENERGY = "energy-threshold"


def upload_song(client: FlaskClient, seconds: float = 6.0, seed: int = 21) -> str:
    audio, _ = make_song(seed=seed, duration=seconds)
    reply = upload(client, audio_bytes(audio, 32000))
    assert reply.status_code == 201, reply.json
    return reply.json["channels"][0]["audio_id"]


def test_get_labels_carry_confidence_and_human_labels_have_one(client: FlaskClient) -> None:
    audio_id = upload_song(client)
    human = {"onset": 0.5, "offset": 0.6, "species": "s", "individual": "i", "clustername": "c"}
    reply = client.post(
        "/get-labels",
        json={
            "audio_id": audio_id,
            "model_name": ENERGY,
            "annotated_areas": [{"onset": 0.0, "offset": 1.0}],
            "human_labels": [human],
        },
    )
    assert reply.status_code == 201, reply.json
    labels = reply.json["labels"]
    predicted = [label for label in labels if label["onset"] >= 1.0]
    assert predicted, labels
    assert all(0.0 <= label["confidence"] <= 1.0 for label in labels)
    assert [label for label in labels if label["onset"] < 1.0] == [{**human, "confidence": 1.0}]


def test_segmentation_job_labels_carry_confidence(client: FlaskClient) -> None:
    audio_id = upload_song(client, seed=22)
    job_id = client.post(
        "/segmentation-jobs", json={"audio_id": audio_id, "model_name": ENERGY}
    ).json["job_id"]
    deadline = time.monotonic() + 30
    while (job := client.get(f"/segmentation-jobs/{job_id}").json)["state"] != "done":
        assert time.monotonic() < deadline and job["state"] in ("queued", "running"), job
        time.sleep(0.02)
    assert job["labels"]
    assert all(0.0 <= label["confidence"] <= 1.0 for label in job["labels"])


def test_exports_add_a_confidence_column_only_where_rows_carry_one(client: FlaskClient) -> None:
    human = {"onset": 0.1, "offset": 0.2, "clustername": "a"}
    predicted = {"onset": 0.3, "offset": 0.4, "clustername": "b", "confidence": 0.75}
    assert client.post("/post-annotations/plain", json={"annotations": [human]}).status_code == 201
    both = {"annotations": [human, predicted]}
    assert client.post("/post-annotations/mixed", json=both).status_code == 201

    plain = client.get("/export-annotations/plain?format=csv").get_data(as_text=True)
    assert plain.splitlines()[0].split(",")[-1] == "channelIndex"
    rows = list(csv.DictReader(io.StringIO(client.get("/export-annotations/mixed").text)))
    assert [row["confidence"] for row in rows] == ["", "0.75"]
    raven = client.get("/export-annotations/mixed?format=raven").get_data(as_text=True)
    header, *lines = raven.splitlines()
    assert header.split("\t")[-1] == "Confidence"
    assert [line.split("\t")[-1] for line in lines] == ["", "0.75"]
    plain_raven = client.get("/export-annotations/plain?format=raven").get_data(as_text=True)
    assert "Confidence" not in plain_raven
