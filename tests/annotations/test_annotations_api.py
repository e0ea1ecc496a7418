"""The Annotations endpoints of shared/API.md, the export formats, and durability."""

from __future__ import annotations

import csv
import http.client
import io
import json
import sqlite3
import threading
from datetime import datetime

import pytest
from api_helpers import reference_annotations
from werkzeug.serving import make_server

FRONTEND_ANNOTATION = {
    "onset": 1.25,
    "offset": 1.5,
    "species": "zebra_finch",
    "individual": "g17y2U",
    "clustername": "A",
    "filename": "song.wav",
    "channelIndex": 0,
    "minFrequency": 400,
    "maxFrequency": 8000,
    "username": "ann",
    "timestamp": 1732450000,
    "annotation_instance": 3,
    "extra_key": {"kept": True},
}


def post(client, hash_id: str | None, annotations: list[dict]):
    path = "/post-annotations" if hash_id is None else f"/post-annotations/{hash_id}"
    return client.post(path, json={"annotations": annotations})


def test_each_post_is_a_new_version_returned_as_posted(client):
    first = [FRONTEND_ANNOTATION]
    second = [FRONTEND_ANNOTATION, {"onset": 2, "offset": 2.5, "species": -1}]
    for version in (first, second):
        reply = post(client, "abc123", version)
        assert reply.status_code == 201
        assert reply.json == {"message": "Annotations inserted successfully."}

    versions = client.get("/get-annotations/abc123").json
    assert [v["annotations"] for v in versions] == [first, second]
    dates = [datetime.fromisoformat(v["version"]) for v in versions]
    assert dates[0] <= dates[1]
    assert client.get("/get-annotations/unknown-hash").json == []


def test_null_and_missing_hash_are_separate_keys(client):
    assert post(client, None, [{"onset": 0, "offset": 1}]).status_code == 201
    assert post(client, "null", [{"onset": 5, "offset": 6}]).status_code == 201
    no_hash = client.get("/get-annotations").json
    null_hash = client.get("/get-annotations/null").json
    assert [v["annotations"][0]["onset"] for v in no_hash] == [0]
    assert [v["annotations"][0]["onset"] for v in null_hash] == [5]
    assert client.get("/get-annotations/").json == no_hash


def test_frontend_url_variants(client):
    """The frontend sends //post-annotations/<id> etc.; trailing slashes vary."""
    body = {"annotations": [{"onset": 0.5, "offset": 0.75}]}
    for path in ("//post-annotations/h1", "/post-annotations/h1/"):
        reply = client.post("/", environ_overrides={"PATH_INFO": path}, json=body)
        assert reply.status_code == 201, path
    for path in ("//get-annotations/h1", "/get-annotations/h1/"):
        reply = client.get("/", environ_overrides={"PATH_INFO": path})
        assert len(reply.json) == 2, path
    for path in ("//get-metadata/", "/get-metadata"):
        reply = client.post(
            "/", environ_overrides={"PATH_INFO": path}, json={"hash_id": "h1", "user_profile": {}}
        )
        assert reply.status_code == 201 and reply.json == [], path


def test_double_slash_over_real_http(app):
    """A real server passes "//post-annotations/x" through untouched; the app must merge it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        body = json.dumps({"annotations": [{"onset": 1, "offset": 2}]})
        headers = {"Content-Type": "application/json"}
        connection.request("POST", "//post-annotations/real", body=body, headers=headers)
        assert connection.getresponse().status == 201
        connection.request("GET", "//get-annotations/real")
        reply = connection.getresponse()
        assert reply.status == 200
        assert json.loads(reply.read())[0]["annotations"] == [{"onset": 1, "offset": 2}]
    finally:
        server.shutdown()
        thread.join(5)


def test_annotations_survive_an_app_restart(make_app, zebra_finch_wav):
    labels = reference_annotations(zebra_finch_wav)
    first_app = make_app()
    assert post(first_app.test_client(), "real", labels).status_code == 201
    first_app.extensions["whisperseg"].annotations.close()

    restarted = make_app().test_client()
    [version] = restarted.get("/get-annotations/real").json
    assert version["annotations"] == labels


def test_store_is_wal_with_full_sync_and_committed(app, client, tmp_path):
    post(client, "durable", [{"onset": 1, "offset": 2}])
    # A second, independent connection sees the row: it was committed before the reply.
    db = sqlite3.connect(tmp_path / "data" / "annotations.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = db.execute("SELECT hash_id FROM annotation_versions").fetchall()
    assert rows == [("durable",)]
    store = app.extensions["whisperseg"].annotations
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"annotations": None},
        {"annotations": "not a list"},
        {"annotations": [{"offset": 1}]},
        {"annotations": [{"onset": "soon", "offset": 1}]},
        {"annotations": [{"onset": 0, "offset": float("inf")}]},
    ],
)
def test_bad_annotation_posts_are_400_and_store_nothing(client, body):
    reply = client.post(
        "/post-annotations/bad", data=json.dumps(body), content_type="application/json"
    )
    assert reply.status_code == 400 and reply.json["error"]
    assert client.get("/get-annotations/bad").json == []


def test_numbers_as_strings_are_stored_as_numbers(client):
    post(client, "strings", [{"onset": "0.5", "offset": "1.5", "species": "x"}])
    [version] = client.get("/get-annotations/strings").json
    assert version["annotations"] == [{"onset": 0.5, "offset": 1.5, "species": "x"}]


def test_metadata_is_empty_and_annotation_time_log_is_stored(app, client):
    reply = client.post("/get-metadata/", json={"hash_id": "h", "user_profile": {"name": "a"}})
    assert reply.status_code == 201 and reply.json == []
    log = [{"event": "start", "t": 1.0}, {"event": "stop", "t": 9.5}]
    reply = client.post("/annotation/annotation-time/", json={"log": log})
    assert reply.status_code == 201
    store = app.extensions["whisperseg"].annotations
    [(stored,)] = store._db.execute("SELECT log FROM annotation_time_logs").fetchall()
    assert json.loads(stored) == log
    assert client.post("/annotation/annotation-time/", json={"log": "x"}).status_code == 400


# --- export ---------------------------------------------------------------------------------


def export(client, hash_id: str, fmt: str | None):
    query = "" if fmt is None else f"?format={fmt}"
    return client.get(f"/export-annotations/{hash_id}{query}")


@pytest.fixture
def posted(client):
    """Two versions for "exp"; the latest has two annotations, out of onset order."""
    post(client, "exp", [{"onset": 9, "offset": 10}])
    later = {"onset": 3.5, "offset": 4.0, "species": -1, "clustername": "B", "channelIndex": 1}
    post(client, "exp", [later, FRONTEND_ANNOTATION])
    return client


def test_export_csv_is_the_latest_version_sorted_by_onset(posted):
    reply = export(posted, "exp", None)
    assert reply.status_code == 200 and reply.mimetype == "text/csv"
    assert 'filename="exp.csv"' in reply.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(reply.get_data(as_text=True))))
    assert list(rows[0]) == [
        "onset",
        "offset",
        "minFrequency",
        "maxFrequency",
        "species",
        "individual",
        "clustername",
        "filename",
        "channelIndex",
    ]
    assert [float(r["onset"]) for r in rows] == [1.25, 3.5]
    assert rows[0]["species"] == "zebra_finch" and rows[0]["maxFrequency"] == "8000"
    assert rows[1]["clustername"] == "B" and rows[1]["individual"] == ""


def test_export_raven_selection_table(posted):
    reply = export(posted, "exp", "raven")
    assert reply.status_code == 200
    lines = reply.get_data(as_text=True).splitlines()
    header = lines[0].split("\t")
    assert header[:7] == [
        "Selection",
        "View",
        "Channel",
        "Begin Time (s)",
        "End Time (s)",
        "Low Freq (Hz)",
        "High Freq (Hz)",
    ]
    first = dict(zip(header, lines[1].split("\t"), strict=True))
    assert first["Selection"] == "1" and first["Channel"] == "1"
    assert float(first["Begin Time (s)"]) == 1.25 and float(first["End Time (s)"]) == 1.5
    assert first["Low Freq (Hz)"] == "400" and first["High Freq (Hz)"] == "8000"
    assert first["Species"] == "zebra_finch" and first["Cluster"] == "A"
    second = dict(zip(header, lines[2].split("\t"), strict=True))
    assert second["Channel"] == "2" and second["Species"] == "" and second["Low Freq (Hz)"] == "0"


def test_export_audacity_labels(posted):
    reply = export(posted, "exp", "audacity")
    assert reply.get_data(as_text=True) == (
        "1.250000\t1.500000\tzebra_finch / g17y2U / A\n3.500000\t4.000000\tB\n"
    )


def test_export_errors(posted):
    assert export(posted, "exp", "xlsx").status_code == 400
    missing = export(posted, "never-posted", "csv")
    assert missing.status_code == 404 and "never-posted" in missing.json["error"]


def test_export_of_real_annotations_round_trips(client, zebra_finch_wav):
    labels = reference_annotations(zebra_finch_wav)
    post(client, "real", labels)
    rows = list(csv.DictReader(io.StringIO(export(client, "real", "csv").get_data(as_text=True))))
    assert len(rows) == len(labels)
    assert [float(r["onset"]) for r in rows] == sorted(a["onset"] for a in labels)
