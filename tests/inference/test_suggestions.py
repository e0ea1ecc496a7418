"""POST /suggest-annotation-areas over HTTP, through the real stack, and the pure selection."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from api_helpers import audio_bytes, upload
from flask import Flask
from flask.testing import FlaskClient

from example_audios.make_example_song import make_song
from whisperseg.segment import Segment
from whisperseg.suggest import RecordingPredictions, suggest_areas

ENERGY = "energy-threshold"


def upload_song(client: FlaskClient, seconds: float, seed: int) -> str:
    audio, _ = make_song(seed=seed, duration=seconds)
    reply = upload(client, audio_bytes(audio, 32000))
    assert reply.status_code == 201, reply.json
    return reply.json["channels"][0]["audio_id"]


def suggest(client: FlaskClient, **body) -> tuple[int, dict]:
    reply = client.post("/suggest-annotation-areas", json=body)
    return reply.status_code, reply.get_json()


def overlaps(a: dict, b: dict) -> bool:
    return a["audio_id"] == b["audio_id"] and a["onset"] < b["offset"] and b["onset"] < a["offset"]


def assert_valid(areas: list[dict], annotated: list[dict], total: float) -> None:
    assert sum(a["offset"] - a["onset"] for a in areas) <= total + 1e-6
    for i, a in enumerate(areas):
        assert a["offset"] > a["onset"] >= 0
        assert not any(overlaps(a, b) for b in areas[i + 1 :]), (a, areas)
        assert not any(overlaps(a, b) for b in annotated), (a, annotated)
    scores = [a["score"] for a in areas]
    assert scores == sorted(scores, reverse=True)  # best first


def test_suggestions_fill_the_budget_outside_annotated_areas_over_several_recordings(
    client: FlaskClient,
) -> None:
    ids = [upload_song(client, 20.0, seed) for seed in (1, 2, 3)]
    annotated = [
        {"audio_id": ids[0], "onset": 0.0, "offset": 12.0},
        {"audio_id": ids[1], "onset": 4.5, "offset": 9.25},
    ]
    status, reply = suggest(
        client, audio_ids=ids, model_name=ENERGY, annotated_areas=annotated, total_seconds=16
    )
    assert status == 200, reply
    assert reply["model_name"] == ENERGY
    areas = reply["areas"]
    assert set(areas[0]) == {"audio_id", "onset", "offset", "score"}
    assert_valid(areas, annotated, 16)
    assert sum(a["offset"] - a["onset"] for a in areas) == pytest.approx(16, abs=0.01)
    assert {a["audio_id"] for a in areas} == set(ids)  # spread over the recordings
    # The loop goes round: label the suggestions, ask again, get new areas.
    status, again = suggest(
        client,
        audio_ids=ids,
        model_name=ENERGY,
        annotated_areas=annotated + areas,
        total_seconds=8,
        area_seconds=2,
    )
    assert status == 200, again
    assert_valid(again["areas"], annotated + areas, 8)
    assert all(a["offset"] - a["onset"] <= 2 + 1e-9 for a in again["areas"])


def test_a_recording_labelled_all_over_gets_no_suggestion(client: FlaskClient) -> None:
    audio_id = upload_song(client, 5.0, seed=4)
    whole = [{"audio_id": audio_id, "onset": 0, "offset": 5.0}]
    status, reply = suggest(client, audio_ids=[audio_id], model_name=ENERGY, annotated_areas=whole)
    assert status == 200 and reply["areas"] == []


def test_suggestions_respect_the_access_rules(
    make_app: Callable[..., Flask], tiny_folder: Path, tmp_path: Path
) -> None:
    """A random tiny model as alice's own: bob may not use it (refused before segmenting)."""
    tokens = tmp_path / "tokens.json"
    rights = ["inference", "train"]
    users = {
        "a-token": {"user": "alice", "rights": rights},
        "b-token": {"user": "bob", "rights": rights},
    }
    tokens.write_text(json.dumps({"tokens": users}))
    shutil.copytree(tiny_folder, tmp_path / "models" / "alices-tiny")
    job = {"state": "done", "owner": "alice", "initial_model": "whisperseg-tiny"}
    (tmp_path / "models" / "alices-tiny" / "job.json").write_text(json.dumps(job))
    client = make_app(auth_tokens_file=tokens).test_client()
    audio_id = upload_song(client, 2.0, seed=6)
    body = {"audio_ids": [audio_id], "model_name": "alices-tiny", "total_seconds": 1}
    assert suggest(client, **body)[0] == 403  # no token
    status, reply = suggest(client, **body, token="b-token")
    assert status == 404 and "alices-tiny" in reply["error"]
    status, reply = suggest(client, **{**body, "model_name": ENERGY}, token="b-token")
    assert status == 200, reply
    assert_valid(reply["areas"], [], 1)


@pytest.mark.slow
def test_suggestions_from_the_default_model_reuse_its_segmentation_jobs(
    client: FlaskClient,
) -> None:
    """The shipped model by default; a segmentation job's kept run is what it answers from."""
    ids = [upload_song(client, 12.0, seed) for seed in (11, 12)]
    for audio_id in ids:
        assert client.post("/segmentation-jobs", json={"audio_id": audio_id}).status_code == 201
    annotated = [{"audio_id": ids[0], "onset": 2.0, "offset": 6.0}]
    status, reply = suggest(client, audio_ids=ids, annotated_areas=annotated, total_seconds=10)
    assert status == 200, reply
    assert reply["model_name"] == "whisperseg-tiny"
    assert_valid(reply["areas"], annotated, 10)
    assert {a["audio_id"] for a in reply["areas"]} == set(ids)


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"audio_ids": ["nope"]}, 404, "nope"),
        ({"audio_ids": []}, 400, "audio_ids"),
        ({"audio_ids": None}, 400, "audio_ids"),
        ({"total_seconds": 0}, 400, "total_seconds"),
        ({"total_seconds": "lots"}, 400, "total_seconds"),
        ({"area_seconds": 0.001}, 400, "area_seconds"),
        ({"total_seconds": 4, "area_seconds": 5}, 400, "area_seconds"),
        ({"model_name": "no-such-model"}, 404, "no-such-model"),
        ({"annotated_areas": [{"onset": 1, "offset": 2}]}, 400, "audio_id"),
        ({"annotated_areas": "x"}, 400, "annotated_areas"),
        ({"min_frequency": -5}, 400, "min_frequency"),
    ],
)
def test_bad_suggestion_requests_get_a_clear_json_error(
    client: FlaskClient, body: dict, status: int, names: str
) -> None:
    audio_id = upload_song(client, 1.0, seed=7)
    request = {"audio_ids": [audio_id], "model_name": ENERGY, **body}
    got, reply = suggest(client, **request)
    assert got == status, reply
    assert names in reply["error"]


def test_reversed_annotated_area_is_refused(client: FlaskClient) -> None:
    audio_id = upload_song(client, 1.0, seed=8)
    area = {"audio_id": audio_id, "onset": 0.8, "offset": 0.2}
    status, reply = suggest(client, audio_ids=[audio_id], model_name=ENERGY, annotated_areas=[area])
    assert status == 400 and "before onset" in reply["error"]


def _calls(start: float, end: float, confidence: float, cluster: str = "a") -> list[Segment]:
    return [Segment(t, t + 0.1, cluster, confidence) for t in range(int(start), int(end))]


def test_uncertain_areas_come_first_and_kinds_and_recordings_spread() -> None:
    sure = RecordingPredictions("sure", 30.0, _calls(0, 30, 0.99), _calls(0, 30, 1.0))
    unsure_calls = _calls(0, 10, 0.99) + _calls(10, 14, 0.2) + _calls(14, 30, 0.99)
    unsure = RecordingPredictions("unsure", 30.0, unsure_calls, _calls(0, 30, 1.0))
    areas = suggest_areas([sure, unsure], total_seconds=8, area_seconds=4)
    assert (areas[0].audio_id, areas[0].onset, areas[0].offset) == ("unsure", 10.0, 14.0)
    assert {a.audio_id for a in areas} == {"sure", "unsure"}
    # Calls the model misses but the energy baseline hears are worth labelling too.
    blind = RecordingPredictions("blind", 30.0, [], _calls(20, 24, 1.0))
    areas = suggest_areas([blind], total_seconds=4, area_seconds=4)
    assert areas[0].onset <= 20.0 and areas[0].offset >= 23.1


def test_every_recording_without_labels_gets_an_area_before_any_gets_a_second() -> None:
    busy = RecordingPredictions("busy", 30.0, _calls(0, 30, 0.3), _calls(0, 30, 1.0))
    silent = RecordingPredictions("silent", 30.0, [])  # nothing found by model or baseline
    areas = suggest_areas([busy, silent], total_seconds=8, area_seconds=4)
    assert [a.audio_id for a in areas] == ["busy", "silent"]
    # A recording with labels already waits until each unlabelled one had its turn.
    labelled = RecordingPredictions("labelled", 30.0, busy.segments, annotated=[(0.0, 4.0)])
    areas = suggest_areas([labelled, silent, busy], total_seconds=12, area_seconds=4)
    assert [a.audio_id for a in areas[:2]] == ["busy", "silent"]
    assert areas[2].audio_id == "labelled"


def test_suggestions_are_quick_on_hours_of_calls() -> None:
    import time

    calls = [Segment(t * 0.5, t * 0.5 + 0.1, "ab"[t % 2], (t % 7) / 7) for t in range(7200 * 2)]
    started = time.perf_counter()
    areas = suggest_areas([RecordingPredictions("long", 7200.0, calls, calls[::3])], 60)
    assert time.perf_counter() - started < 2.0
    assert sum(a.offset - a.onset for a in areas) == pytest.approx(60, abs=0.01)
