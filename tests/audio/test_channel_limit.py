"""An upload with more channels than ``max_channels`` is refused from its header (400 naming
the limit), before its samples are decoded or any spectrogram is drawn."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from api_helpers import audio_bytes, upload
from flask import Flask


def test_more_channels_than_the_limit_get_400_naming_it(make_app: Callable[..., Flask]) -> None:
    client = make_app(max_channels=4).test_client()
    samples = np.zeros((1000, 5), dtype=np.float32)
    reply = upload(client, audio_bytes(samples, 16000))
    assert reply.status_code == 400
    assert reply.get_json()["error"] == (
        "The file has 5 channels, more than the limit of 4 (max_channels)"
    )
    reply = upload(client, audio_bytes(samples[:, :4], 16000))
    assert reply.status_code == 201 and len(reply.get_json()["channels"]) == 4


def test_1024_channels_are_refused_at_once_by_default(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    data = audio_bytes(np.zeros((10, 1024), dtype=np.int16), 16000, subtype="PCM_16")
    started = time.perf_counter()
    reply = upload(client, data)
    assert reply.status_code == 400 and "limit of 64 (max_channels)" in reply.get_json()["error"]
    assert time.perf_counter() - started < 1.0  # was 5 s of spectrograms before the limit
