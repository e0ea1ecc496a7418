"""Helpers shared by the API tests: encode audio like a user's file, decode server replies."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import soundfile as sf
from flask.testing import FlaskClient
from PIL import Image


def audio_bytes(samples: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None):
    """Encode samples (frames[, channels]) in memory, like a file a user would upload."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, sr, format=fmt, subtype=subtype)
    return buffer.getvalue()


def tone(freq: float, seconds: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def upload(client: FlaskClient, data: bytes, filename: str = "audio.wav", **fields):
    """POST /upload as the frontend does (multipart, field newAudioFile, string form values)."""
    form = {k: str(v) for k, v in fields.items()}
    form["newAudioFile"] = (io.BytesIO(data), filename)
    return client.post("/upload", data=form, content_type="multipart/form-data")


def decode_wav(b64: str) -> tuple[np.ndarray, int, str]:
    """(int16 samples, rate, subtype) of a base64 WAV from the server."""
    with sf.SoundFile(io.BytesIO(base64.b64decode(b64))) as f:
        return f.read(dtype="int16"), f.samplerate, f.subtype


def decode_jpeg(b64: str) -> np.ndarray:
    """RGB pixels (rows, columns, 3) of a base64 JPEG from the server."""
    assert not b64.startswith("data:")
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "JPEG"
    return np.asarray(image.convert("RGB"))


def reference_annotations(wav: Path) -> list[dict]:
    """The human annotations of a shared recording, in the frontend's annotation format."""
    labels = json.loads(wav.with_suffix(".json").read_text())
    return [
        {"onset": on, "offset": off, "species": labels.get("species", ""), "clustername": c}
        for on, off, c in zip(labels["onset"], labels["offset"], labels["cluster"], strict=True)
    ]


@contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Base URL of a local HTTP server (127.0.0.1, a free port) answering with ``handler``."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join(5)
