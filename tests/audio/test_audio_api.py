"""The Audio endpoints of shared/API.md, driven through the Flask test client."""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pytest
import soundfile as sf
from api_helpers import audio_bytes, decode_jpeg, decode_wav, tone, upload

from audio.codec import decode_audio
from audio_store import AudioStore, UnknownAudio

CONFIG_KEYS = {
    "spec_cal_method",
    "n_fft",
    "bins_per_octave",
    "hop_length",
    "num_spec_columns",
    "sampling_rate",
    "min_frequency",
    "max_frequency",
}


def upload_ok(client, data: bytes, **fields) -> dict:
    response = upload(client, data, **fields)
    assert response.status_code == 201, response.json
    return response.json


def clip_spec(client, audio_id: str, **params):
    return client.post("/get-audio-clip-spec", json={"audio_id": audio_id, **params})


def clip_spec_ok(client, audio_id: str, **params) -> dict:
    response = clip_spec(client, audio_id, **params)
    assert response.status_code == 200, response.json
    return response.json


def tone_upload(client, freq: float = 2000.0, seconds: float = 2.0, sr: int = 32000) -> str:
    reply = upload_ok(client, audio_bytes(tone(freq, seconds, sr), sr, subtype="PCM_16"))
    return reply["channels"][0]["audio_id"]


def peak_frequency(reply: dict) -> float:
    """Frequency of the loudest row of a return_matrix reply."""
    matrix = np.array(reply["matrix"])
    return reply["freqs"][int(np.argmax(matrix.mean(axis=1)))]


# --- /upload ---------------------------------------------------------------------------------


def test_upload_real_recording_returns_contract_keys_and_image(client, zebra_finch_wav):
    info = sf.info(zebra_finch_wav)
    reply = upload_ok(client, zebra_finch_wav.read_bytes())

    assert set(reply) == {"configurations", "channels"}
    config = reply["configurations"]
    assert set(config) == CONFIG_KEYS
    assert config == {
        "spec_cal_method": "log-mel",
        "n_fft": 512,
        "bins_per_octave": None,
        "hop_length": info.frames // 1000,
        "num_spec_columns": 1000,
        "sampling_rate": 32000,
        "min_frequency": 0.0,
        "max_frequency": 16000.0,
    }
    [channel] = reply["channels"]
    assert set(channel) == {"audio_id", "audio_duration", "spec", "freqs"}
    assert uuid.UUID(channel["audio_id"]).version == 4
    assert channel["audio_duration"] == pytest.approx(info.frames / 32000)
    assert decode_jpeg(channel["spec"]).shape == (300, 1000, 3)
    freqs = channel["freqs"]
    assert len(freqs) == 300 and freqs[0] == pytest.approx(0) and freqs[-1] == pytest.approx(16000)
    assert np.all(np.diff(freqs) > 0)


def test_upload_spectrogram_is_brighter_where_humans_annotated_song(client, zebra_finch_wav):
    labels = json.loads(zebra_finch_wav.with_suffix(".json").read_text())
    reply = upload_ok(client, zebra_finch_wav.read_bytes())
    [channel] = reply["channels"]
    column_seconds = reply["configurations"]["hop_length"] / 32000
    brightness = decode_jpeg(channel["spec"]).mean(axis=(0, 2))
    in_song = np.zeros(1000, dtype=bool)
    for onset, offset in zip(labels["onset"], labels["offset"], strict=True):
        in_song[int(onset / column_seconds) : int(offset / column_seconds)] = True
    assert in_song.any() and (~in_song).any()
    assert brightness[in_song].mean() > brightness[~in_song].mean() + 10


def test_hop_length_default_fits_a_long_16k_file_in_one_image(client):
    sr = 16000
    samples = np.zeros(round(419.43 * sr), dtype=np.int16)
    samples[sr * 100 : sr * 101] = (tone(1000, 1.0, sr) * 32767).astype(np.int16)
    reply = upload_ok(client, audio_bytes(samples, sr, subtype="PCM_16"))
    assert reply["configurations"]["hop_length"] == 6710
    assert reply["configurations"]["n_fft"] == 512
    assert reply["channels"][0]["audio_duration"] == pytest.approx(419.43)
    assert decode_jpeg(reply["channels"][0]["spec"]).shape == (300, 1000, 3)


def test_upload_form_fields_are_applied_and_strings_accepted(client):
    data = audio_bytes(tone(3000, 1.0, 32000), 32000, subtype="PCM_16")
    reply = upload_ok(
        client,
        data,
        num_spec_columns="500",
        hop_length="",
        spec_cal_method="constant-q",
        n_fft="1024",
        min_frequency="100",
        max_frequency="8000",
        color_map="gray",
    )
    config = reply["configurations"]
    assert config["num_spec_columns"] == 500 and config["hop_length"] == 32000 // 500
    assert config["n_fft"] == 1024 and config["spec_cal_method"] == "constant-q"
    assert config["min_frequency"] == 100 and config["max_frequency"] == 8000
    pixels = decode_jpeg(reply["channels"][0]["spec"]).astype(int)
    assert pixels.shape == (300, 500, 3)
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() <= 12  # gray: R == G == B up to JPEG


def test_stereo_file_gives_one_id_per_channel_in_file_order(client):
    sr = 32000
    left, right = tone(1000, 1.0, sr), tone(5000, 1.0, sr, amplitude=0.25)
    stereo = np.stack([left, right], axis=1)
    reply = upload_ok(client, audio_bytes(stereo, sr, subtype="PCM_16"))
    ids = [c["audio_id"] for c in reply["channels"]]
    assert len(ids) == 2 and len(set(ids)) == 2
    for audio_id, original in zip(ids, (left, right), strict=True):
        wav = client.post("/get-audio-clip-wav", json={"audio_id": audio_id, "clip_duration": 1})
        samples, rate, _ = decode_wav(wav.json["wav"])
        expected = sf.read(io.BytesIO(audio_bytes(original, sr, subtype="PCM_16")), dtype="int16")
        assert rate == sr and np.array_equal(samples, expected[0])
    peaks = [peak_frequency(clip_spec_ok(client, i, return_matrix=True)) for i in ids]
    assert peaks[0] == pytest.approx(1000, rel=0.05) and peaks[1] == pytest.approx(5000, rel=0.05)


@pytest.mark.parametrize(
    ("fmt", "subtype", "filename"),
    [("MP3", "MPEG_LAYER_III", "a.mp3"), ("FLAC", "PCM_24", "a.flac"), ("OGG", "VORBIS", "a.ogg")],
)
def test_compressed_formats_upload(client, fmt, subtype, filename):
    data = audio_bytes(tone(2500, 2.0, 32000), 32000, fmt=fmt, subtype=subtype)
    reply = upload(client, data, filename=filename).json
    [channel] = reply["channels"]
    assert channel["audio_duration"] == pytest.approx(2.0, abs=0.1)
    assert reply["configurations"]["sampling_rate"] == 32000
    spec = clip_spec_ok(client, channel["audio_id"], return_matrix=True, start_time=0.5)
    assert peak_frequency(spec) == pytest.approx(2500, rel=0.05)


# --- /get-audio-clip-spec --------------------------------------------------------------------


def test_clip_spec_keys_shapes_and_top_row_is_highest_frequency(client):
    audio_id = tone_upload(client, freq=12000)
    reply = clip_spec_ok(client, audio_id, hop_length=32, num_spec_columns=400)
    assert set(reply) == {"spec", "freqs", "configurations"}
    assert set(reply["configurations"]) == CONFIG_KEYS
    pixels = decode_jpeg(reply["spec"])
    assert pixels.shape == (300, 400, 3)
    freqs = np.array(reply["freqs"])
    brightest_row = int(np.argmax(pixels.mean(axis=(1, 2))))
    # 12 kHz of 16 kHz is near the top: image row 0 is the highest frequency, freqs[0] the lowest.
    assert freqs[299 - brightest_row] == pytest.approx(12000, rel=0.03)
    assert brightest_row < 100


def test_clip_spec_blank_and_string_parameters_mean_defaults(client):
    audio_id = tone_upload(client)
    body = {
        "hop_length": "320",
        "num_spec_columns": "",
        "n_fft": None,
        "spec_cal_method": "",
        "sampling_rate": "null",
        "min_frequency": "",
        "max_frequency": "0",
        "brightness": "1.0",
        "start_time": "0",
    }
    config = clip_spec_ok(client, audio_id, **body)["configurations"]
    assert config == {
        "spec_cal_method": "log-mel",
        "n_fft": 512,
        "bins_per_octave": None,
        "hop_length": 320,
        "num_spec_columns": 1000,
        "sampling_rate": 32000,
        "min_frequency": 0.0,
        "max_frequency": 16000.0,
    }


def test_log_mel_frequency_clamping_and_mel_rows(client):
    audio_id = tone_upload(client)
    reply = clip_spec_ok(client, audio_id, min_frequency=-5, max_frequency=99999)
    assert reply["configurations"]["min_frequency"] == 0
    assert reply["configurations"]["max_frequency"] == 16000
    reply = clip_spec_ok(client, audio_id, min_frequency=500, max_frequency=8000)
    freqs = np.array(reply["freqs"])
    assert freqs[0] == pytest.approx(500) and freqs[-1] == pytest.approx(8000)
    steps = np.diff(freqs)
    assert steps[-1] > 3 * steps[0]  # mel spacing: wider apart at high frequencies


def test_constant_q_bins_per_octave_rule_and_geometric_rows(client):
    audio_id = tone_upload(client, freq=1000)
    reply = clip_spec_ok(client, audio_id, spec_cal_method="constant-q", return_matrix=True)
    config, freqs = reply["configurations"], np.array(reply["freqs"])
    # fmin defaults to 50 Hz; smallest b with 50 * 2**(300 / b) <= 16000 is 37.
    assert config["min_frequency"] == 50 and config["bins_per_octave"] == 37
    assert freqs[0] == pytest.approx(50)
    assert freqs[1:] / freqs[:-1] == pytest.approx(np.full(299, 2 ** (1 / 37)))
    assert peak_frequency(reply) == pytest.approx(1000, rel=0.03)

    raised = clip_spec_ok(client, audio_id, spec_cal_method="constant-q", bins_per_octave=12)
    assert raised["configurations"]["bins_per_octave"] == 37
    kept = clip_spec_ok(
        client, audio_id, spec_cal_method="constant-q", bins_per_octave=60, min_frequency=200
    )
    assert kept["configurations"]["bins_per_octave"] == 60
    assert kept["freqs"][-1] == pytest.approx(200 * 2 ** (299 / 60))


def test_colormaps_brightness_and_contrast(client):
    audio_id = tone_upload(client)

    def pixels(**params) -> np.ndarray:
        return decode_jpeg(clip_spec_ok(client, audio_id, **params)["spec"]).astype(float)

    inferno = pixels()
    assert np.array_equal(pixels(color_map="jet"), inferno)  # unknown names fall back to inferno
    viridis = pixels(color_map="viridis")
    # viridis starts dark purple (68, 1, 84); inferno starts near black.
    assert viridis[..., 2].mean() > inferno[..., 2].mean() + 20
    assert pixels(brightness=2.0).mean() > inferno.mean() * 1.3
    assert pixels(contrast=0.3).std() < inferno.std() * 0.5


def test_clip_past_the_end_is_zero_padded(client):
    audio_id = tone_upload(client, seconds=1.0)
    reply = clip_spec_ok(client, audio_id, start_time=0.5, hop_length=32, num_spec_columns=1000)
    assert "matrix" not in reply  # only on request
    reply = clip_spec_ok(
        client, audio_id, start_time=0.5, hop_length=32, num_spec_columns=1000, return_matrix=True
    )
    matrix = np.array(reply["matrix"])
    assert matrix.shape == (300, 1000)
    # 0.5 s of audio = 500 columns of 32 samples; afterwards digital silence (-100 dB floor).
    assert matrix[:, :480].max() > -20
    assert matrix[:, 520:].max() == pytest.approx(-100)


def test_display_sampling_rate_does_not_change_the_stored_audio(client):
    sr = 32000
    samples = tone(3000, 1.0, sr)
    reply = upload_ok(client, audio_bytes(samples, sr, subtype="PCM_16"))
    audio_id = reply["channels"][0]["audio_id"]
    resampled = clip_spec_ok(client, audio_id, sampling_rate=16000, return_matrix=True)
    assert resampled["configurations"]["sampling_rate"] == 16000
    assert resampled["configurations"]["max_frequency"] == 8000
    assert resampled["configurations"]["hop_length"] == 16000 // 1000
    assert peak_frequency(resampled) == pytest.approx(3000, rel=0.05)

    original = clip_spec_ok(client, audio_id)
    assert original["configurations"]["sampling_rate"] == 32000
    wav = client.post("/get-audio-clip-wav", json={"audio_id": audio_id}).json["wav"]
    decoded, rate, _ = decode_wav(wav)
    assert rate == 32000 and len(decoded) == 32000


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"spec_cal_method": "stft"}, "spec_cal_method"),
        ({"min_frequency": 9000, "max_frequency": 8000}, "min_frequency"),
        ({"min_frequency": 20000}, "min_frequency"),
        ({"spec_cal_method": "constant-q", "max_frequency": 40}, "min_frequency"),
        ({"num_spec_columns": 20001}, "20000"),
        ({"hop_length": 200_000, "num_spec_columns": 1000}, "max_clip_samples"),
        ({"hop_length": "abc"}, "hop_length"),
        ({"brightness": "bright"}, "brightness"),
        ({"start_time": -1}, "start_time"),
        ({"start_time": 1e300}, "start_time"),
        ({"min_frequency": float("nan")}, "min_frequency"),
        ({"n_fft": 10**6}, "n_fft"),
        ({"sampling_rate": 10**8}, "sampling_rate"),
    ],
)
def test_clip_spec_bad_input_is_a_400_naming_the_problem(client, params, message):
    audio_id = tone_upload(client)
    response = clip_spec(client, audio_id, **params)
    assert response.status_code == 400
    assert message in response.json["error"]


def test_unknown_audio_id_is_404(client):
    for path in (
        "/get-audio-clip-spec",
        "/get-audio-clip-wav",
        "/get-audio-clip-for-visualization",
    ):
        response = client.post(path, json={"audio_id": str(uuid.uuid4())})
        assert response.status_code == 404
        assert "audio_id" in response.json["error"]


def test_missing_audio_id_and_non_object_body_are_400(client):
    assert client.post("/get-audio-clip-spec", json={}).status_code == 400
    response = client.post("/get-audio-clip-spec", data="[1, 2]", content_type="application/json")
    assert response.status_code == 400 and "JSON object" in response.json["error"]
    response = client.post("/get-audio-clip-spec", data="{oops", content_type="application/json")
    assert response.status_code == 400 and "JSON" in response.json["error"]


# --- /get-audio-clip-wav and /get-audio-clip-for-visualization ----------------------------


def test_clip_wav_is_the_original_samples_zero_padded(client, zebra_finch_wav):
    original, sr = sf.read(zebra_finch_wav, dtype="int16")
    audio_id = upload_ok(client, zebra_finch_wav.read_bytes())["channels"][0]["audio_id"]

    reply = client.post(
        "/get-audio-clip-wav", json={"audio_id": audio_id, "start_time": 1.0, "clip_duration": 0.5}
    )
    assert reply.status_code == 200 and set(reply.json) == {"wav"}
    samples, rate, subtype = decode_wav(reply.json["wav"])
    assert (rate, subtype) == (sr, "PCM_16")
    assert np.array_equal(samples, original[sr : sr + sr // 2])

    end = len(original) / sr
    reply = client.post(
        "/get-audio-clip-wav",
        json={"audio_id": audio_id, "start_time": end - 0.25, "clip_duration": 1},
    )
    samples, _, _ = decode_wav(reply.json["wav"])
    tail = round((end - 0.25) * sr)
    assert len(samples) == sr
    assert np.array_equal(samples[: len(original) - tail], original[tail:])
    assert not samples[len(original) - tail :].any()


def test_clip_wav_of_float_source_is_16_bit(client):
    samples = tone(440, 0.5, 48000)
    audio_id = upload_ok(client, audio_bytes(samples, 48000, subtype="FLOAT"))["channels"][0][
        "audio_id"
    ]
    wav = client.post("/get-audio-clip-wav", json={"audio_id": audio_id, "clip_duration": "0.5"})
    decoded, rate, subtype = decode_wav(wav.json["wav"])
    assert (rate, subtype, len(decoded)) == (48000, "PCM_16", 24000)
    assert np.abs(decoded / 32767 - samples).max() < 1e-3


def test_clip_wav_longer_than_the_limit_is_refused(make_app):
    client = make_app(max_clip_samples=100_000).test_client()
    audio_id = tone_upload(client, seconds=1.0)
    reply = client.post("/get-audio-clip-wav", json={"audio_id": audio_id, "clip_duration": 10})
    assert reply.status_code == 400 and "max_clip_samples" in reply.json["error"]


def test_visualization_short_span_is_z_scored_samples(client):
    sr = 32000
    samples = tone(300, 1.0, sr) * np.linspace(0, 1, sr, dtype=np.float32)
    audio_id = upload_ok(client, audio_bytes(samples, sr, subtype="PCM_16"))["channels"][0][
        "audio_id"
    ]
    reply = client.post(
        "/get-audio-clip-for-visualization",
        json={"audio_id": audio_id, "start_time": 0.5, "clip_duration": 0.25, "target_length": 7},
    )
    assert reply.status_code == 200 and set(reply.json) == {"wav_array"}
    values = np.array(reply.json["wav_array"])
    assert len(values) == sr // 4
    assert values.mean() == pytest.approx(0, abs=1e-6) and values.std() == pytest.approx(
        1, rel=1e-4
    )
    assert np.corrcoef(values, samples[sr // 2 : sr // 2 + sr // 4])[0, 1] > 0.9999


def test_visualization_long_span_keeps_peaks_and_empty_span_gives_zeros(client):
    sr = 32000
    samples = tone(200, 10.0, sr, amplitude=0.1)
    samples[5 * sr] = 0.9  # one click must survive the reduction
    audio_id = upload_ok(client, audio_bytes(samples, sr, subtype="PCM_16"))["channels"][0][
        "audio_id"
    ]
    values = np.array(
        client.post("/get-audio-clip-for-visualization", json={"audio_id": audio_id}).json[
            "wav_array"
        ]
    )
    assert 9000 <= len(values) <= 11000
    assert values.std() == pytest.approx(1, rel=1e-3)
    assert np.argmax(values) == pytest.approx(len(values) / 2, abs=3)
    assert values.max() > 5 * np.sort(values)[-3]

    empty = client.post(
        "/get-audio-clip-for-visualization",
        json={"audio_id": audio_id, "start_time": 20, "clip_duration": 1, "target_length": 50},
    ).json["wav_array"]
    assert empty == [0.0] * 50


# --- release, status, limits, errors ------------------------------------------------------


def test_release_frees_ids_and_ignores_unknown_and_null(client, app):
    first, second = tone_upload(client), tone_upload(client)
    reply = client.post(
        "/release-audio-given-ids", json={"audio_id_list": [first, None, "not-an-id"]}
    )
    assert reply.status_code == 201 and reply.json == {"status": "success"}
    assert clip_spec(client, first).status_code == 404
    assert clip_spec(client, second).status_code == 200
    assert client.post("/release-audio-given-ids", json={}).json == {"status": "success"}


def test_get_status(client):
    for path in ("/get-status", "//get-status", "/get-status/"):
        # PATH_INFO as a server passes it: the test client would read "//x" as a host name.
        reply = client.get("/", environ_overrides={"PATH_INFO": path})
        assert reply.status_code == 200 and reply.json == {"response": "success"}


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"", 400, "empty"),
        (b"<html>not audio at all</html>" * 20, 400, "audio"),
        (audio_bytes(np.zeros((0, 1), np.float32), 16000, subtype="PCM_16"), 400, "no samples"),
    ],
)
def test_bad_uploads_are_refused_and_store_nothing(client, app, data, status, message):
    reply = upload(client, data)
    assert reply.status_code == status and message in reply.json["error"]
    assert len(app.extensions["whisperseg"].audio) == 0


def test_upload_with_a_bad_form_value_is_400_and_stores_nothing(client, app):
    data = audio_bytes(tone(1000, 1.0, 16000), 16000, subtype="PCM_16")
    reply = upload(client, data, num_spec_columns="many")
    assert reply.status_code == 400 and "num_spec_columns" in reply.json["error"]
    reply = upload(client, data, spec_cal_method="mfcc")
    assert reply.status_code == 400 and "spec_cal_method" in reply.json["error"]
    assert len(app.extensions["whisperseg"].audio) == 0


def test_upload_without_file_field_is_400(client):
    reply = client.post("/upload", data={"hop_length": "10"}, content_type="multipart/form-data")
    assert reply.status_code == 400 and "newAudioFile" in reply.json["error"]


def test_oversize_upload_is_413_json(make_app):
    client = make_app(max_upload_mb=0.05).test_client()
    reply = upload(client, audio_bytes(tone(1000, 2.0, 32000), 32000, subtype="PCM_16"))
    assert reply.status_code == 413 and "max_upload_mb" in reply.json["error"]


def test_header_claiming_absurd_length_is_refused_before_reading(client, app):
    flac = bytearray(audio_bytes(tone(1000, 1.0, 32000), 32000, fmt="FLAC", subtype="PCM_16"))
    # STREAMINFO's 36-bit total-samples field, set to its maximum (about 2**36 frames).
    flac[21] |= 0x0F
    flac[22:26] = b"\xff\xff\xff\xff"
    reply = upload(client, bytes(flac), filename="huge.flac")
    assert reply.status_code == 413 and "audio_memory_budget_mb" in reply.json["error"]
    assert len(app.extensions["whisperseg"].audio) == 0


def test_a_recording_longer_than_the_clip_limit_still_gets_its_whole_file_image(make_app):
    client = make_app(max_clip_samples=50_000).test_client()
    reply = upload(client, audio_bytes(tone(1000, 2.0, 32000), 32000, subtype="PCM_16"))
    assert reply.status_code == 201, reply.json
    config = reply.json["configurations"]
    assert config["hop_length"] * config["num_spec_columns"] == 64_000  # the whole file
    # asked again, the whole file is drawn; a span beyond it is bounded by the limit
    clip = {"audio_id": reply.json["channels"][0]["audio_id"], "hop_length": 64}
    assert client.post("/get-audio-clip-spec", json=clip).status_code == 200
    refused = client.post("/get-audio-clip-spec", json={**clip, "hop_length": 128})
    assert refused.status_code == 400 and "max_clip_samples" in refused.json["error"]


def test_memory_budget_evicts_least_recently_used_audio(make_app):
    # Each upload is 2 s of 32 kHz int16 = 128,000 bytes; the budget holds one of them.
    client = make_app(audio_memory_budget_mb=0.2).test_client()
    first = tone_upload(client)
    second = tone_upload(client)
    assert clip_spec(client, first).status_code == 404
    assert clip_spec(client, second).status_code == 200


def test_a_refused_upload_evicts_nothing(make_app):
    client = make_app(audio_memory_budget_mb=0.2).test_client()
    kept = tone_upload(client)
    data = audio_bytes(tone(440, 2.0, 32000), 32000, subtype="PCM_16")
    refused = upload(client, data, spec_cal_method="wavelets")
    assert refused.status_code == 400
    assert clip_spec(client, kept).status_code == 200


def test_errors_are_json_never_html(client):
    missing = client.get("/no-such-endpoint")
    assert missing.status_code == 404 and missing.is_json and "error" in missing.json
    wrong_method = client.get("/get-audio-clip-spec")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json


def test_cors_preflight_and_duplicate_slashes(client):
    double_slash = {"PATH_INFO": "//get-audio-clip-spec"}
    preflight = client.options(
        "/",
        environ_overrides=double_slash,
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", "http://localhost:5173")
    assert "content-type" in preflight.headers["Access-Control-Allow-Headers"].lower()
    audio_id = tone_upload(client)
    reply = client.post(
        "/",
        environ_overrides=double_slash,
        json={"audio_id": audio_id},
        headers={"Origin": "http://x.org"},
    )
    assert reply.status_code == 200 and reply.headers["Access-Control-Allow-Origin"]


def test_openapi_documents_every_endpoint_with_the_validating_models(client):
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    expected = {
        "/upload": "post",
        "/upload-by-url": "post",
        "/get-audio-clip-spec": "post",
        "/get-audio-clip-wav": "post",
        "/get-audio-clip-for-visualization": "post",
        "/release-audio-given-ids": "post",
        "/get-status": "get",
        "/post-annotations/{hash_id}": "post",
        "/get-annotations/{hash_id}": "get",
        "/export-annotations/{hash_id}": "get",
        "/get-metadata/": "post",
        "/annotation/annotation-time/": "post",
    }
    for path, method in expected.items():
        assert method in spec["paths"][path], path
    clip = spec["paths"]["/get-audio-clip-spec"]["post"]
    assert "200" in clip["responses"]
    schema = spec["components"]["schemas"]["ClipSpecRequest"]
    assert {"audio_id", "start_time", "brightness", "contrast", "return_matrix"} <= set(
        schema["properties"]
    ) and CONFIG_KEYS - {"bins_per_octave"} <= set(schema["properties"])
    assert schema["required"] == ["audio_id"]
    upload_op = spec["paths"]["/upload"]["post"]
    assert "201" in upload_op["responses"]
    multipart = upload_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert multipart["allOf"][1]["properties"]["newAudioFile"]["format"] == "binary"


# --- AudioStore directly ------------------------------------------------------------------


def test_store_keeps_16_bit_audio_as_int16_and_expires_idle_audio():
    now = [0.0]
    store = AudioStore(budget_bytes=10**7, idle_timeout_s=3600, clock=lambda: now[0])
    decoded = decode_audio(audio_bytes(tone(500, 1.0, 16000), 16000, subtype="PCM_16"), 10**7)
    [audio_id] = store.add(decoded)
    channel = store.get(audio_id)
    assert channel.samples.dtype == np.int16 and channel.sample_rate == 16000
    assert store.bytes_used == 32000
    now[0] = 3000.0
    store.get(audio_id)  # use resets the idle clock
    now[0] = 6000.0
    assert audio_id in store
    now[0] = 6601.0
    with pytest.raises(UnknownAudio):
        store.get(audio_id)
    assert store.bytes_used == 0


def test_store_resampled_views_are_cached_bounded_and_released():
    store = AudioStore(budget_bytes=10**7, idle_timeout_s=3600, resample_cache_bytes=100_000)
    decoded = decode_audio(audio_bytes(tone(500, 1.0, 16000), 16000, subtype="PCM_24"), 10**7)
    [audio_id] = store.add(decoded)
    original = store.get(audio_id).samples
    assert original.dtype == np.float32  # 24-bit sources stay float32
    view = store.samples_at(audio_id, 8000)
    assert len(view) == 8000 and store.samples_at(audio_id, 8000) is view
    assert store.samples_at(audio_id, 16000) is original
    assert len(store.samples_at(audio_id, 22050)) == 22050  # evicts the 8 kHz view (budget)
    assert store.samples_at(audio_id, 8000) is not view
    store.release([audio_id])
    with pytest.raises(UnknownAudio):
        store.samples_at(audio_id, 8000)
