"""Domain errors raised anywhere below a route, and the HTTP status clients get for them."""

from __future__ import annotations

from annotations.labels import NoTrainingData
from api.json_api import ErrorStatuses
from audio.codec import AudioDecodeError, AudioTooLarge
from audio.url_fetch import UrlFetchError
from audio_store import ClipTooLong, ResampleTooLarge, UnknownAudio
from inference.runs import UnknownRunError
from jobs.record import JobsUnavailable, UnknownJobError
from model_registry import ModelNameError, UnknownModelError
from server.auth import NotAuthorized
from spectrogram import SpecConfigError

ERROR_STATUSES: ErrorStatuses = {
    UnknownAudio: 404,
    AudioDecodeError: 400,
    AudioTooLarge: 413,
    SpecConfigError: 400,
    ResampleTooLarge: 400,
    ClipTooLong: 400,
    UrlFetchError: lambda exc: exc.status,  # 400, 413 or 502, decided where it was raised
    NotAuthorized: 403,
    UnknownModelError: 404,
    UnknownJobError: 404,
    UnknownRunError: 404,
    ModelNameError: 400,
    NoTrainingData: 400,
    JobsUnavailable: 503,
}
