"""/openapi.json is a valid OpenAPI 3.1 document, and the replies a user gets match it."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import audio_bytes, tone, upload
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from backend import api

DOC = api.openapi()


def assert_matches_documented_reply(method: str, path: str, reply) -> None:
    """The reply's JSON validates against the schema the document gives for its status."""
    operation = DOC["paths"][path][method]
    documented = operation["responses"][str(reply.status_code)]
    schema = documented["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": DOC["components"]})
    errors = [e.message for e in validator.iter_errors(reply.get_json())]
    assert not errors, f"{method.upper()} {path}: {errors[:3]}"


def test_the_document_is_valid_openapi() -> None:
    validate(DOC)


def test_every_json_route_documents_its_reply() -> None:
    undocumented = [
        f"{method.upper()} {path}"
        for path, item in DOC["paths"].items()
        for method, operation in item.items()
        if "export-annotations" not in path  # a file download, not JSON
        and "content" not in next(iter(operation["responses"].values()))
    ]
    assert undocumented == []


@pytest.fixture
def audio_id(client: FlaskClient) -> str:
    reply = upload(client, audio_bytes(tone(2000, 1.0, 16000), 16000))
    assert_matches_documented_reply("post", "/upload", reply)
    return reply.json["channels"][0]["audio_id"]


REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("post", "/get-audio-clip-spec", {"start_time": 0.2, "return_matrix": True}),
    ("post", "/get-audio-clip-wav", {"clip_duration": 0.5}),
    ("post", "/get-audio-clip-for-visualization", {"target_length": 100}),
    ("post", "/get-labels", {"model_name": "energy-threshold"}),
    ("post", "/list-models-available-for-inference", None),
    ("post", "/list-models-available-for-finetuning", None),
    ("post", "/list-models-training-in-progress", None),
    ("post", "/whisperseg-auth", None),
    ("get", "/get-status", None),
    ("get", "/training-jobs", None),
]


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS, ids=[r[1] for r in REQUESTS])
def test_replies_match_the_document(client, audio_id, method: str, path: str, body) -> None:
    if method == "get":
        reply = client.get(path)
    else:
        reply = client.post(path, json=None if body is None else {"audio_id": audio_id, **body})
    assert reply.status_code in (200, 201), reply.get_json()
    assert_matches_documented_reply(method, path, reply)


def test_annotation_replies_match_the_document(client: FlaskClient) -> None:
    posted = client.post("/post-annotations/h1", json={"annotations": [{"onset": 1, "offset": 2}]})
    assert_matches_documented_reply("post", "/post-annotations/{hash_id}", posted)
    listed = client.get("/get-annotations/h1")
    assert_matches_documented_reply("get", "/get-annotations/{hash_id}", listed)
    released = client.post("/release-audio-given-ids", json={"audio_id_list": [None, "x"]})
    assert_matches_documented_reply("post", "/release-audio-given-ids", released)
