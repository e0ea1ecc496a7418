"""Fuzz every route the server describes in its own /openapi.json.

Requests are generated from the document's JSON schemas: valid bodies, bodies broken on
purpose (wrong types, missing keys, non-objects, bytes that are not JSON, deep nesting) and
uploads of malformed audio. Whatever arrives, the server must answer below 500, with a JSON
``{"error": ...}`` for every 4xx, and only with JSON a browser can parse (no NaN).
The app has no WhisperSeg model (only the energy baseline), so get-labels stays cheap and
finetuning can never start, and low work limits keep every valid call fast.
"""

from __future__ import annotations

import io
import json
import math
import random
import struct
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from api_helpers import audio_bytes, tone, upload
from flask.testing import FlaskClient
from hypothesis import event, given
from hypothesis import strategies as st

from backend import api, create_app
from server.settings import ServerSettings

DOC = api.openapi()
SCHEMAS = DOC["components"]["schemas"]
FUZZ_LIMITS = {"max_spec_columns": 2000, "max_clip_samples": 2_000_000, "max_upload_mb": 1}
EDGE_INTEGERS = [0, 1, -1, 2, 3, 255, 2**31, -(2**31), 2**63, -(2**63), 2**64, 10**30]
EDGE_FLOATS = [0.0, -0.0, 5e-324, 1e-300, 0.5, 1e9, 1e308, -1e308]
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
NOT_AN_OBJECT = st.none() | st.booleans() | st.floats() | st.text() | st.lists(ANY_JSON, max_size=3)
REFUSED_URLS = ["file:///etc/passwd", "ftp://example.org/a.wav", "http://127.0.0.1:9/a.wav", ""]


def wav_header(frames: int, rate: int = 32000, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV header that claims ``frames`` frames, whatever follows it."""
    data_bytes = min(frames * channels * 2, 2**32 - 64)
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
    sizes = struct.pack("<I", data_bytes + 36), struct.pack("<I", data_bytes)
    return b"RIFF" + sizes[0] + b"WAVEfmt " + fmt + b"data" + sizes[1]


GOOD_WAV = audio_bytes(tone(1000, 0.5, 16000), 16000, subtype="PCM_16")
GOOD_MP3 = audio_bytes(tone(1000, 0.5, 16000), 16000, fmt="MP3")
NOISE = random.Random(0).randbytes(4096)
# name -> (file bytes, status a user gets): what is readable is read, however broken the file.
MALFORMED_AUDIO: dict[str, tuple[bytes, int]] = {
    "empty file": (b"", 400),
    "wav header only": (GOOD_WAV[:44], 400),
    "truncated wav header": (GOOD_WAV[:30], 400),
    "wav cut in mid-sample": (GOOD_WAV[:1001], 201),
    "truncated mp3 header": (GOOD_MP3[:100], 400),
    "half an mp3": (GOOD_MP3[: len(GOOD_MP3) // 2], 201),
    "wav header claiming 3 hours": (wav_header(3 * 3600 * 32000) + bytes(2000), 201),
    "wav header claiming 1 hour of 8 channels": (wav_header(32000 * 3600, 32000, 8) + NOISE, 201),
    "wav with a sample rate of 0": (wav_header(100, rate=0) + bytes(200), 400),
    "random bytes": (NOISE, 400),
    "html page": (b"<html><body>not audio</body></html>" * 50, 400),
    "riff header then garbage": (b"RIFF\xff\xff\xff\xffWAVE" + NOISE[:300], 400),
}
FILENAMES = ["a.wav", "a.mp3", "notes.txt", "", "../../etc/passwd", "\u202egnp.wav"]


@dataclass(frozen=True)
class Operation:
    """One method of one path of the OpenAPI document."""

    method: str
    path: str
    spec: dict[str, Any]

    @property
    def body_media(self) -> str | None:
        return next(iter(self.spec.get("requestBody", {}).get("content", {})), None)

    def body_schema(self) -> dict[str, Any]:
        return self.spec["requestBody"]["content"][self.body_media]["schema"]

    def parameters(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == where]


OPERATIONS = [
    Operation(method.upper(), path, spec)
    for path, item in DOC["paths"].items()
    for method, spec in item.items()
]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` and merge ``allOf`` parts (the upload form's fields plus its file)."""
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    if "allOf" in schema:
        parts = [resolve(part) for part in schema["allOf"]]
        return {
            "type": "object",
            "properties": {k: v for p in parts for k, v in p.get("properties", {}).items()},
            "required": [r for p in parts for r in p.get("required", [])],
        }
    return schema


def in_range(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def from_schema(schema: dict[str, Any], special: dict[str, st.SearchStrategy], name: str = ""):
    """Values valid for ``schema``, edge cases included; ``special`` gives the values of named
    fields (real audio ids, model names) that random text would almost never hit."""
    schema = resolve(schema)
    if name in special:
        return special[name]
    if "anyOf" in schema:
        return st.one_of([from_schema(s, special) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    low, high = schema.get("minimum"), schema.get("maximum")
    low_int = None if low is None else math.ceil(low)
    high_int = None if high is None else math.floor(high)
    # Everyday values (a hop of 320, 2000 columns) as often as extreme ones.
    everyday = st.integers(max(low_int or 0, -10), min(4096, 4096 if high is None else high_int))
    whole = everyday | st.integers(low_int, high_int)
    kind = schema.get("type")
    if kind == "integer":
        return whole | st.sampled_from([i for i in EDGE_INTEGERS if in_range(i, low, high)])
    if kind == "number":
        finite = st.floats(low, high, allow_nan=False, allow_infinity=False)
        return finite | whole | st.sampled_from([x for x in EDGE_FLOATS if in_range(x, low, high)])
    if kind == "string":
        return st.text(max_size=30)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), special), max_size=4)
    if kind == "object":
        properties = {k: from_schema(v, special, k) for k, v in schema["properties"].items()}
        required = schema.get("required", [])
        return st.fixed_dictionaries(
            {k: v for k, v in properties.items() if k in required},
            optional={k: v for k, v in properties.items() if k not in required},
        )
    return ANY_JSON


def broken_body(schema: dict[str, Any], special: dict[str, st.SearchStrategy]):
    """Bodies a careless or hostile client sends: wrong types, missing keys, not an object."""
    valid = from_schema(schema, special)
    names = list(resolve(schema).get("properties", {})) or ["key"]
    required = resolve(schema).get("required", [])
    wrong_type = st.tuples(valid, st.sampled_from(names), ANY_JSON).map(
        lambda t: {**t[0], t[1]: t[2]}
    )
    variants = [NOT_AN_OBJECT, wrong_type]
    if required:
        missing = st.tuples(valid, st.sampled_from(required))
        variants.append(missing.map(lambda t: {k: v for k, v in t[0].items() if k != t[1]}))
    return st.one_of(variants)


def json_payload(schema: dict[str, Any], special: dict[str, st.SearchStrategy]):
    """Raw request bytes: valid bodies, broken bodies (NaN included, as Python's json writes
    it), deeply nested arrays, and bytes that are not JSON."""
    nested = st.integers(1, 5000).map(lambda n: '{"a": ' + "[" * n + "]" * n + "}")
    broken = broken_body(schema, special).map(json.dumps) | nested
    valid = from_schema(schema, special).map(json.dumps)
    return valid.map(str.encode) | broken.map(str.encode) | st.binary(max_size=200)


def form_fields(schema: dict[str, Any]):
    """Multipart form fields as the browser sends them (every value a string), some of them
    replaced by arbitrary text."""
    names = list(resolve(schema)["properties"])
    as_strings = from_schema(schema, {}).map(
        lambda f: {k: "null" if v is None else str(v) for k, v in f.items()}
    )
    garbled = st.dictionaries(st.sampled_from(names), st.text(max_size=20), max_size=3)
    return st.tuples(as_strings, st.just({}) | garbled).map(lambda t: {**t[0], **t[1]})


def path_value():
    return st.sampled_from(["null", "x", "a b", "..", "%2e%2e"]) | st.text(min_size=1, max_size=30)


@st.composite
def fuzz_request(draw, operation: Operation, audio_ids: list[str]) -> dict[str, Any]:
    """Keyword arguments of ``FlaskClient.open`` for one generated request."""
    special = {
        "audio_id": st.sampled_from(audio_ids),
        "audio_ids": st.lists(st.sampled_from(audio_ids), min_size=1, max_size=3) | st.just([]),
        "audio_url": st.sampled_from(REFUSED_URLS),
        "model_name": st.sampled_from(["energy-threshold", "whisperseg-tiny"]) | st.text(),
        "initial_model_name": st.sampled_from(["energy-threshold", "whisperseg-tiny"]),
        "new_model_name": st.sampled_from(["fuzz-model", "a.b_c", "energy-threshold"]) | st.text(),
        "onset": st.floats(0, 3),
        "offset": st.floats(0, 3),
    }
    path = operation.path
    for parameter in operation.parameters("path"):
        value = quote(draw(path_value()), safe="")
        path = path.replace("{" + parameter["name"] + "}", value)
    request: dict[str, Any] = {"method": operation.method, "path": path}
    query = {}
    for parameter in operation.parameters("query"):
        if draw(st.booleans()):
            query[parameter["name"]] = str(draw(from_schema(parameter["schema"], {}) | ANY_JSON))
    request["query_string"] = query
    if operation.body_media == "application/json":
        request["data"] = draw(json_payload(operation.body_schema(), special))
        request["content_type"] = draw(st.sampled_from(["application/json", "text/plain"]))
    elif operation.body_media == "multipart/form-data":
        fields = draw(form_fields(operation.body_schema()))
        name = draw(st.sampled_from(list(MALFORMED_AUDIO)))
        audio = draw(st.just(GOOD_WAV) | st.just(MALFORMED_AUDIO[name][0]) | st.binary())
        if draw(st.integers(0, 4)):  # mostly with a file
            fields["newAudioFile"] = (io.BytesIO(audio), draw(st.sampled_from(FILENAMES)))
        request["data"] = fields
        request["content_type"] = "multipart/form-data"
    return request


def strict_json(text: str) -> Any:
    """Parse as a browser's JSON.parse would: NaN and Infinity are errors."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} in a JSON reply")

    return json.loads(text, parse_constant=refuse)


def assert_well_behaved(response, what: str) -> None:
    """No server error; 4xx as {"error": "..."}; every JSON reply parseable by a browser."""
    body = response.get_data(as_text=True)
    assert response.status_code < 500, f"{what} -> {response.status_code} {body[:300]}"
    if response.status_code >= 400:
        assert response.mimetype == "application/json", f"{what} -> {body[:300]}"
        error = strict_json(body)
        assert isinstance(error, dict) and isinstance(error.get("error"), str) and error["error"]
    elif response.mimetype == "application/json":
        strict_json(body)


def upload_audio(client: FlaskClient, seconds: float, rate: int, channels: int = 1) -> list[str]:
    samples = np.tile(tone(1500, seconds, rate)[:, None], (1, channels))
    reply = upload(client, audio_bytes(samples, rate, subtype="PCM_16"))
    assert reply.status_code == 201, reply.json
    return [channel["audio_id"] for channel in reply.json["channels"]]


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory):
    """An app with low work limits and no WhisperSeg model (only the energy baseline)."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "models").mkdir()
    settings = ServerSettings(
        data_dir=root / "data", models_dir=root / "models", url_fetch_timeout_s=2, **FUZZ_LIMITS
    )
    app = create_app(settings)
    yield app
    app.extensions["whisperseg"].close()


@pytest.fixture(scope="module")
def fuzz_audio_ids(fuzz_app) -> list[str]:
    client = fuzz_app.test_client()
    return upload_audio(client, 2.0, 16000) + upload_audio(client, 1.0, 8000, channels=3)


def test_openapi_json_is_served_and_describes_every_route(fuzz_app) -> None:
    """The fuzzer walks /openapi.json, so a route missing from it would go untested."""
    client = fuzz_app.test_client()
    assert client.get("/openapi.json").json == DOC
    described = {(m.upper(), p.rstrip("/")) for p, item in DOC["paths"].items() for m in item}
    for rule in fuzz_app.url_map.iter_rules():
        if rule.endpoint in ("static", "openapi"):
            continue
        path = rule.rule.replace("<", "{").replace(">", "}").rstrip("/")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (method, path) in described, f"{method} {rule.rule} is not in /openapi.json"


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method} {op.path}")
@given(data=st.data())
def test_fuzzed_requests_never_cause_a_server_error(
    operation: Operation, fuzz_app, fuzz_audio_ids: list[str], data: st.DataObject
) -> None:
    request = data.draw(fuzz_request(operation, fuzz_audio_ids), label="request")
    response = fuzz_app.test_client().open(**request)
    event(f"status {response.status_code}")  # see --hypothesis-show-statistics
    assert_well_behaved(response, f"{operation.method} {request['path']}")


@pytest.mark.parametrize("filename", ["recording.wav", "recording.mp3", "recording.txt"])
@pytest.mark.parametrize("name", list(MALFORMED_AUDIO))
def test_malformed_audio_is_refused_or_read_for_what_it_really_holds(
    make_app, name: str, filename: str
) -> None:
    """A header may claim hours (690 MB and more): only the bytes really sent are read."""
    data, expected = MALFORMED_AUDIO[name]
    client = make_app().test_client()
    reply, peak = traced_peak(lambda: upload(client, data, filename, num_spec_columns=200))
    assert_well_behaved(reply, name)
    assert reply.status_code == expected, reply.json
    if expected == 201:
        for channel in reply.json["channels"]:  # none of these files holds more than 0.5 s
            assert channel["audio_duration"] <= 0.5
    assert peak < 64 * 2**20, f"{name}: {peak / 2**20:.0f} MB traced"


def traced_peak(action: Callable[[], Any]) -> tuple[Any, int]:
    """(result, peak bytes traced while it ran); numpy arrays are traced too."""
    tracemalloc.start()
    try:
        result = action()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


HUGE_REQUESTS = [
    ("/get-audio-clip-spec", {"num_spec_columns": 10**9}, "max_spec_columns"),
    ("/get-audio-clip-spec", {"num_spec_columns": 20_000, "hop_length": 10**6}, "max_clip_samples"),
    ("/get-audio-clip-spec", {"num_spec_columns": 1, "hop_length": 10**15}, "max_clip_samples"),
    ("/get-audio-clip-wav", {"clip_duration": 10**8}, "max_clip_samples"),
    ("/get-audio-clip-for-visualization", {"clip_duration": 10**8}, "max_clip_samples"),
]


@pytest.mark.parametrize(("route", "params", "limit"), HUGE_REQUESTS)
def test_huge_requests_are_refused_naming_the_limit_before_allocating(
    client: FlaskClient, route: str, params: dict, limit: str
) -> None:
    [audio_id] = upload_audio(client, 1.0, 32000)
    request = {"audio_id": audio_id, **params}
    reply, peak = traced_peak(lambda: client.post(route, json=request))
    assert reply.status_code == 400 and limit in reply.json["error"]
    assert peak < 2**20, f"{peak / 2**20:.1f} MB traced for a refused request"


def test_the_memory_check_sees_an_accepted_request(client: FlaskClient) -> None:
    """Control for the test above: 5000 columns of 300 float32 rows do show up (6 MB)."""
    [audio_id] = upload_audio(client, 1.0, 32000)
    request = {"audio_id": audio_id, "num_spec_columns": 5000}
    reply, peak = traced_peak(lambda: client.post("/get-audio-clip-spec", json=request))
    assert reply.status_code == 200
    assert peak > 300 * 5000 * 4


def test_huge_upload_spectrogram_is_refused_naming_the_limit(client: FlaskClient) -> None:
    reply = upload(client, GOOD_WAV, num_spec_columns=10**9)
    assert reply.status_code == 400 and "max_spec_columns" in reply.json["error"]
    assert len(client.application.extensions["whisperseg"].audio) == 0


def test_non_finite_samples_never_reach_a_reply(client: FlaskClient) -> None:
    """A float WAV may hold NaN or infinity; the frontend's JSON.parse must still read every
    reply about it, so they are read as silence."""
    samples = tone(1000, 1.0, 16000)
    samples[100:200], samples[300], samples[400] = np.nan, np.inf, -np.inf
    reply = upload(client, audio_bytes(samples, 16000, subtype="FLOAT"))
    assert reply.status_code == 201
    audio_id = reply.json["channels"][0]["audio_id"]
    for route, extra in [
        ("/get-audio-clip-spec", {"return_matrix": True}),
        ("/get-audio-clip-for-visualization", {}),
        ("/get-audio-clip-wav", {}),
        ("/get-labels", {"model_name": "energy-threshold"}),
    ]:
        response = client.post(route, json={"audio_id": audio_id, **extra})
        assert response.status_code in (200, 201)
        assert_well_behaved(response, route)


def test_nan_in_a_posted_body_is_refused_and_stored_annotations_stay_readable(
    client: FlaskClient,
) -> None:
    """Python's json (and so requests) writes NaN for a missing pandas value; stored, it would
    make that hash_id unreadable for the browser, so such a body is refused."""
    body = '{"annotations": [{"onset": 0, "offset": 1, "confidence": NaN}]}'
    reply = client.post("/post-annotations/h1", data=body, content_type="application/json")
    assert reply.status_code == 400 and "NaN" in reply.json["error"]
    assert client.get("/get-annotations/h1").json == []


@pytest.mark.parametrize("depth", [100, 1000, 100_000])
def test_deeply_nested_bodies_are_400_and_cannot_poison_a_hash_id(
    client: FlaskClient, depth: int
) -> None:
    body = '{"annotations": [{"onset": 0, "offset": 1, "x": ' + "[" * depth + "]" * depth + "}]}"
    reply = client.post("/post-annotations/deep", data=body, content_type="application/json")
    assert reply.status_code == 400 and "nested" in reply.json["error"]
    assert client.get("/get-annotations/deep").status_code == 200
