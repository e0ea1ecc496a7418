"""The annotation server: Flask app factory and its routes (contract: shared/API.md).

Success codes: 200 for reads (GET routes and ``/get-audio-clip-*``), 201 for every other POST.
Run ``python backend.py --help`` for flags, or with gunicorn (one worker: audio lives in this
process's memory)::

    gunicorn --workers 1 --threads 8 --bind 127.0.0.1:8050 'backend:create_app_from_env()'
"""

from __future__ import annotations

import base64
import logging
import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any, BinaryIO, Literal

import numpy as np
from flask import Flask, Response, current_app, request
from flask_cors import CORS
from pydantic import BaseModel, ConfigDict, Field

from annotation_export import FORMATS
from annotation_store import AnnotationStore
from audio_io import (
    AudioDecodeError,
    AudioTooLarge,
    DecodedAudio,
    decode_audio,
    encode_wav_int16,
    to_float32,
)
from audio_store import AudioStore, ResampleTooLarge, UnknownAudio
from auth import NotAuthorized, TokenAuth
from finetune_worker import FINETUNE_DEFAULTS, FinetuneWorker, JobRecord, UnknownJobError
from http_api import ApiError, ApiModel, JsonApi
from labeling import Label, NoTrainingData, merge_labels, training_clips
from model_registry import ModelNameError, ModelRegistry, UnknownModelError
from server_settings import ServerSettings
from spectrogram import (
    MAX_N_FFT,
    SpecConfig,
    SpecConfigError,
    compute_db,
    render_jpeg_base64,
    resolve_config,
    row_frequencies,
)
from url_fetch import UrlFetchError, fetch_url
from waveform import visualization_array

log = logging.getLogger(__name__)

api = JsonApi(title="WhisperSeg annotation server", version="1.0")

# Domain errors raised anywhere below a route, and the HTTP status clients get for them.
ERROR_STATUSES: dict[type[Exception], int] = {
    UnknownAudio: 404,
    AudioDecodeError: 400,
    AudioTooLarge: 413,
    SpecConfigError: 400,
    ResampleTooLarge: 400,
    NotAuthorized: 403,
    UnknownModelError: 404,
    UnknownJobError: 404,
    ModelNameError: 400,
    NoTrainingData: 400,
}
MAX_SAMPLING_RATE = 1_000_000
MAX_VISUALIZATION_LENGTH = 1_000_000
MAX_SECONDS = 1e9  # start times and durations; keeps sample indices far inside int64


@dataclass(frozen=True)
class Services:
    """Per-app state, reachable from any route through :func:`services`."""

    settings: ServerSettings
    audio: AudioStore
    annotations: AnnotationStore
    models: ModelRegistry
    training: FinetuneWorker
    auth: TokenAuth


def services() -> Services:
    return current_app.extensions["whisperseg"]


def create_app(settings: ServerSettings) -> Flask:
    """A ready-to-serve app whose durable state lives under ``settings.data_dir``."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.json.sort_keys = False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    models = ModelRegistry(settings.models_dir, max_loaded=settings.max_loaded_models)
    app.extensions["whisperseg"] = Services(
        settings=settings,
        audio=AudioStore(
            budget_bytes=settings.audio_memory_budget_bytes,
            idle_timeout_s=settings.idle_timeout_hours * 3600,
        ),
        annotations=AnnotationStore(settings.data_dir / "annotations.sqlite3"),
        models=models,
        training=FinetuneWorker(models),
        auth=TokenAuth.from_file(settings.auth_tokens_file),
    )
    CORS(app)
    api.init_app(app, ERROR_STATUSES)
    return app


def create_app_from_env() -> Flask:
    """App configured from ``WHISPERSEG_*`` environment variables (the gunicorn entry point)."""
    logging.basicConfig(level=logging.INFO)
    return create_app(ServerSettings.from_env())


# --- Audio -------------------------------------------------------------------------------


class SpecParams(ApiModel):
    """Spectrogram parameters shared by uploads and clip requests; null/""/<=0 = default."""

    hop_length: int | None = Field(None, description="Samples between columns")
    num_spec_columns: int | None = Field(None, description="Image width; default 1000")
    sampling_rate: int | None = Field(None, le=MAX_SAMPLING_RATE, description="Display rate")
    spec_cal_method: str | None = Field(None, description="log-mel (default) or constant-q")
    n_fft: int | None = Field(None, le=MAX_N_FFT)
    bins_per_octave: int | None = None
    min_frequency: float | None = None
    max_frequency: float | None = None
    color_map: str | None = Field(
        None, description="viridis|plasma|inferno|magma|cividis|gray; anything else inferno"
    )
    brightness: float = Field(1.0, ge=0, description="Multiplicative; 1.0 = unchanged")
    contrast: float = Field(1.0, ge=0, description="Multiplicative; 1.0 = unchanged")


class UploadForm(SpecParams):
    """Multipart form fields of /upload (the file itself is ``newAudioFile``)."""


class UploadByUrlRequest(SpecParams):
    audio_url: str


@api.post("/upload", form=UploadForm, files=["newAudioFile"], tags=["Audio"])
def upload(form: UploadForm) -> dict[str, Any]:
    """Store an uploaded file, one audio_id per channel, and return each channel's spectrogram."""
    file = request.files.get("newAudioFile")
    if file is None:
        raise ApiError(400, "No file in the multipart field 'newAudioFile'")
    return _store_and_describe(file.stream, form)  # decoded from the spooled file, not a copy


@api.post("/upload-by-url", body=UploadByUrlRequest, tags=["Audio"])
def upload_by_url(body: UploadByUrlRequest) -> dict[str, Any]:
    """Download audio_url (http/https; no private addresses unless allowed), store like /upload."""
    settings = services().settings
    try:
        data = fetch_url(
            body.audio_url,
            max_bytes=min(settings.url_fetch_max_bytes, settings.max_upload_bytes),
            timeout_s=settings.url_fetch_timeout_s,
            allow_private=settings.allow_private_urls,
        )
    except UrlFetchError as exc:
        raise ApiError(exc.status, exc.message) from None
    return _store_and_describe(data, body)


def _store_and_describe(data: bytes | BinaryIO, params: SpecParams) -> dict[str, Any]:
    def before_read(frames: int, sample_rate: int, nbytes: int) -> None:
        _spec_config(sample_rate, frames, params)  # refuse bad parameters before evicting
        services().audio.make_room(nbytes)  # never hold a full store and the new samples

    decoded = decode_audio(data, services().settings.audio_memory_budget_bytes, before_read)
    config = _spec_config(decoded.sample_rate, decoded.samples.shape[0], params)
    ids = services().audio.add(decoded)
    try:
        channels = [_channel_reply(audio_id, decoded, config, params) for audio_id in ids]
    except Exception:
        services().audio.release(ids)
        raise
    return {"configurations": config.as_dict(), "channels": channels}


def _channel_reply(
    audio_id: str, decoded: DecodedAudio, config: SpecConfig, params: SpecParams
) -> dict[str, Any]:
    image, _ = _spectrogram(audio_id, 0.0, config, params)
    return {
        "audio_id": audio_id,
        "audio_duration": decoded.samples.shape[0] / decoded.sample_rate,
        **image,
    }


class ClipSpecRequest(SpecParams):
    audio_id: str
    start_time: float = Field(0.0, ge=0, le=MAX_SECONDS, description="Seconds from the start")
    return_matrix: bool = Field(
        False,
        description="Also return 'matrix': the dB values, matrix[i] is the row at freqs[i] "
        "(lowest frequency first), one value per column",
    )


@api.post("/get-audio-clip-spec", body=ClipSpecRequest, status=200, tags=["Audio"])
def get_audio_clip_spec(body: ClipSpecRequest) -> dict[str, Any]:
    """Spectrogram of hop_length * num_spec_columns samples from start_time (zero-padded)."""
    channel = services().audio.get(body.audio_id)
    config = _spec_config(channel.sample_rate, channel.num_samples, body)
    reply, db = _spectrogram(body.audio_id, body.start_time, config, body)
    if body.return_matrix:
        reply["matrix"] = np.round(db, 2).tolist()
    return {**reply, "configurations": config.as_dict()}


def _spec_config(source_rate: int, source_samples: int, params: SpecParams) -> SpecConfig:
    """Effective parameters, refusing work beyond the server's limits before any allocation."""
    limits = services().settings
    columns = params.num_spec_columns
    if columns is not None and columns > limits.max_spec_columns:
        raise ApiError(
            400,
            f"num_spec_columns {columns} is more than the limit of {limits.max_spec_columns} "
            "(max_spec_columns)",
        )
    rate = (
        params.sampling_rate if params.sampling_rate and params.sampling_rate > 0 else source_rate
    )
    config = resolve_config(
        rate,
        math.ceil(source_samples * rate / source_rate),
        spec_cal_method=params.spec_cal_method,
        n_fft=params.n_fft,
        bins_per_octave=params.bins_per_octave,
        hop_length=params.hop_length,
        num_spec_columns=params.num_spec_columns,
        min_frequency=params.min_frequency,
        max_frequency=params.max_frequency,
    )
    span = config.hop_length * config.num_spec_columns
    if span > limits.max_clip_samples:
        raise ApiError(
            400,
            f"hop_length * num_spec_columns = {span} samples is more than the limit of "
            f"{limits.max_clip_samples} (max_clip_samples)",
        )
    return config


def _spectrogram(
    audio_id: str, start_time: float, config: SpecConfig, params: SpecParams
) -> tuple[dict[str, Any], np.ndarray]:
    """({"spec": base64 JPEG, "freqs": [...]}, dB matrix) of one channel."""
    samples = services().audio.samples_at(audio_id, config.sampling_rate)
    db = compute_db(samples, round(start_time * config.sampling_rate), config)
    image = render_jpeg_base64(db, params.color_map, params.brightness, params.contrast)
    return {"spec": image, "freqs": row_frequencies(config).tolist()}, db


class ClipRequest(ApiModel):
    audio_id: str
    start_time: float = Field(0.0, ge=0, le=MAX_SECONDS, description="Seconds")
    clip_duration: float | None = Field(
        None, ge=0, le=MAX_SECONDS, description="Seconds; default: to the end"
    )


@api.post("/get-audio-clip-wav", body=ClipRequest, status=200, tags=["Audio"])
def get_audio_clip_wav(body: ClipRequest) -> dict[str, str]:
    """Mono 16-bit PCM WAV (base64) at the original rate, zero-padded to clip_duration."""
    channel = services().audio.get(body.audio_id)
    start, length = _clip_span(body, channel.sample_rate, channel.num_samples)
    clip = np.zeros(length, dtype=channel.samples.dtype)
    available = channel.samples[start : start + length]
    clip[: len(available)] = available
    return {"wav": base64.b64encode(encode_wav_int16(clip, channel.sample_rate)).decode("ascii")}


class VisualizationRequest(ClipRequest):
    target_length: int = Field(
        0, ge=0, le=MAX_VISUALIZATION_LENGTH, description="Zeros returned for an empty span"
    )


@api.post(
    "/get-audio-clip-for-visualization", body=VisualizationRequest, status=200, tags=["Audio"]
)
def get_audio_clip_for_visualization(body: VisualizationRequest) -> dict[str, list[float]]:
    """Z-scored samples of the span (not padded); above 100,000 samples ~10,000 min/max values."""
    channel = services().audio.get(body.audio_id)
    start, length = _clip_span(body, channel.sample_rate, channel.num_samples)
    span = channel.samples[start : start + length]
    return {"wav_array": visualization_array(span, body.target_length).tolist()}


def _clip_span(body: ClipRequest, sample_rate: int, num_samples: int) -> tuple[int, int]:
    """(first sample, length) of a clip request, refusing lengths beyond max_clip_samples."""
    start = round(body.start_time * sample_rate)
    if body.clip_duration is None:
        length = max(0, num_samples - start)
    else:
        length = round(body.clip_duration * sample_rate)
    limit = services().settings.max_clip_samples
    if length > limit:
        raise ApiError(
            400,
            f"clip_duration * sampling rate = {length} samples is more than the limit of "
            f"{limit} (max_clip_samples)",
        )
    return start, length


class ReleaseRequest(ApiModel):
    audio_id_list: list[str | None] = Field(default_factory=list)


@api.post("/release-audio-given-ids", body=ReleaseRequest, tags=["Audio"])
def release_audio_given_ids(body: ReleaseRequest) -> dict[str, str]:
    """Free these channels now; unknown ids and nulls are ignored."""
    services().audio.release(body.audio_id_list)
    return {"status": "success"}


@api.get("/get-status", tags=["Audio"])
def get_status() -> dict[str, str]:
    """Keep-alive ping."""
    return {"response": "success"}


# --- Annotations -------------------------------------------------------------------------


class Annotation(BaseModel):
    """One labelled segment; keys beyond onset/offset are kept exactly as posted."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    onset: float
    offset: float


class AnnotationsPost(ApiModel):
    annotations: list[Annotation]


@api.post("/post-annotations", body=AnnotationsPost, tags=["Annotations"])
@api.post("/post-annotations/<hash_id>", body=AnnotationsPost, tags=["Annotations"])
def post_annotations(body: AnnotationsPost, hash_id: str = "") -> dict[str, str]:
    """Store the list as a new version for hash_id (none and "null" are valid keys too)."""
    annotations = [a.model_dump(exclude_unset=True) for a in body.annotations]
    services().annotations.add_version(hash_id, annotations)
    return {"message": "Annotations inserted successfully."}


@api.get("/get-annotations", tags=["Annotations"])
@api.get("/get-annotations/<hash_id>", tags=["Annotations"])
def get_annotations(hash_id: str = "") -> list[dict[str, Any]]:
    """Every version, oldest first: [{"version": ISO date, "annotations": [...]}]; unknown -> []."""
    return services().annotations.versions(hash_id)


class ExportQuery(ApiModel):
    format: Literal["csv", "raven", "audacity"] = "csv"


@api.get("/export-annotations", query=ExportQuery, tags=["Annotations"])
@api.get("/export-annotations/<hash_id>", query=ExportQuery, tags=["Annotations"])
def export_annotations(query: ExportQuery, hash_id: str = "") -> Response:
    """The latest version as a file: ?format=csv (default), raven (selection table), audacity."""
    annotations = services().annotations.latest(hash_id)
    if annotations is None:
        raise ApiError(404, f"No annotations stored for hash_id {hash_id!r}")
    export = FORMATS[query.format]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", hash_id) or "annotations"
    return Response(
        export.render(annotations),
        mimetype=export.media_type,
        headers={"Content-Disposition": f'attachment; filename="{stem}.{export.extension}"'},
    )


class MetadataRequest(ApiModel):
    hash_id: str | None = None
    user_profile: Any = None


@api.post("/get-metadata/", body=MetadataRequest, tags=["Annotations"])
def get_metadata(body: MetadataRequest) -> list[Any]:
    """Metadata of an annotation project; [] since no metadata service is configured."""
    return []


class AnnotationTimeLog(ApiModel):
    log: list[Any]


@api.post("/annotation/annotation-time/", body=AnnotationTimeLog, tags=["Annotations"])
def annotation_time(body: AnnotationTimeLog) -> dict[str, str]:
    """Store the frontend's annotation-time log."""
    services().annotations.add_time_log(body.log)
    return {"message": "Annotation time log stored."}


# --- Models ------------------------------------------------------------------------------


class TokenRequest(ApiModel):
    token: str | None = Field(None, description="Needed only when token authentication is on")


class Area(ApiModel):
    onset: float = Field(allow_inf_nan=False)
    offset: float = Field(allow_inf_nan=False)


LabelName = str | int | float | None


def _label_name(value: LabelName) -> str:
    """Missing names and the frontend's -1 ("no value") become "Unknown"."""
    return "Unknown" if value in (None, "", -1, "-1") else str(value)


class HumanLabel(Area):
    species: LabelName = None
    individual: LabelName = None
    clustername: LabelName = None

    def to_label(self) -> Label:
        names = (self.species, self.individual, self.clustername)
        return Label(self.onset, self.offset, *map(_label_name, names))


def _model_entry(name: str, status: str = "ready", eta: str = "--:--:--") -> dict[str, str]:
    return {"model_name": name, "status": status, "eta": eta}


def _visible_models(token: str | None, finetunable: bool = False) -> list[dict[str, str]]:
    user = services().auth.user(token, "inference")
    return [
        _model_entry(info.name)
        for info in services().models.list_ready()
        if services().auth.can_see(user, info.owner) and (info.can_finetune or not finetunable)
    ]


@api.post("/list-models-available-for-inference", body=TokenRequest, tags=["Models"])
def list_models_for_inference(body: TokenRequest) -> dict[str, list]:
    """Models get-labels can use now (status "ready")."""
    return {"response": _visible_models(body.token)}


@api.post("/list-models-available-for-finetuning", body=TokenRequest, tags=["Models"])
def list_models_for_finetuning(body: TokenRequest) -> dict[str, list]:
    """Models a finetuning job can start from."""
    return {"response": _visible_models(body.token, finetunable=True)}


@api.post("/list-models-training-in-progress", body=TokenRequest, tags=["Models"])
def list_models_training(body: TokenRequest) -> dict[str, list]:
    """Queued and training jobs with a live ETA (HH:MM:SS)."""
    user = services().auth.user(body.token, "inference")
    return {
        "response": [
            _model_entry(job.name, job.state, job.eta) for job in _visible_jobs(user) if job.active
        ]
    }


def _visible_jobs(user: str | None) -> list[JobRecord]:
    return [j for j in services().training.jobs() if services().auth.can_see(user, j.owner)]


def _usable_model(name: str | None, user: str | None) -> str:
    """The named model (default: the shipped one) if it is ready and this user may use it."""
    models = services().models
    name = name or models.default_model_name
    info = next((m for m in models.list_ready() if m.name == name), None)
    if info is None or not services().auth.can_see(user, info.owner):
        raise ApiError(404, f"Unknown model {name!r}: ask list-models-available-for-inference")
    return name


class LabelledAudioRequest(TokenRequest):
    """A channel with the areas a person annotated and the labels drawn in them."""

    audio_id: str
    min_frequency: float | None = Field(None, ge=0, description="Hz; default: the model's")
    annotated_areas: list[Area] = Field(default_factory=list)
    human_labels: list[HumanLabel] = Field(default_factory=list)

    def areas(self) -> list[tuple[float, float]]:
        return [(area.onset, area.offset) for area in self.annotated_areas]

    def labels(self) -> list[Label]:
        return [label.to_label() for label in self.human_labels]


class GetLabelsRequest(LabelledAudioRequest):
    model_name: str | None = Field(None, description="Default: the shipped model")


@api.post("/get-labels", body=GetLabelsRequest, tags=["Models"])
def get_labels(body: GetLabelsRequest) -> dict[str, list]:
    """The model's segments outside the annotated areas, the human labels inside them."""
    user = services().auth.user(body.token, "inference")
    channel = services().audio.get(body.audio_id)
    name = _usable_model(body.model_name, user)
    segmenter = services().models.segmenter(name)
    predictions = segmenter.segment(
        to_float32(channel.samples), channel.sample_rate, body.min_frequency
    )
    labels = merge_labels(predictions, body.labels(), body.areas())
    return {"labels": [asdict(label) for label in labels]}


class FinetuneRequest(LabelledAudioRequest):
    new_model_name: str
    initial_model_name: str | None = Field(None, description="Default: the shipped model")
    inital_model_name: str | None = Field(None, description="Older spelling, still accepted")


@api.post("/finetune-whisperseg", body=FinetuneRequest, tags=["Models"])
def finetune_whisperseg(body: FinetuneRequest) -> dict[str, str]:
    """Queue finetuning on the annotated areas; answers at once, trains in the background."""
    user = services().auth.user(body.token, "train")
    channel = services().audio.get(body.audio_id)
    services().models.validate_new_name(body.new_model_name)
    initial = _usable_model(body.initial_model_name or body.inital_model_name, user)
    examples = training_clips(
        to_float32(channel.samples),
        channel.sample_rate,
        body.areas(),
        body.labels(),
        min_frequency=body.min_frequency or 0.0,
    )
    summary = body.model_dump(exclude={"token", "human_labels"})
    summary["num_human_labels"] = len(body.human_labels)
    config = replace(FINETUNE_DEFAULTS, max_steps=services().settings.finetune_max_steps)
    services().training.submit(body.new_model_name, initial, examples, user, summary, config)
    return {"message": "Training"}


class CancelRequest(TokenRequest):
    model_name: str


@api.post("/cancel-finetuning", body=CancelRequest, tags=["Models"])
def cancel_finetuning(body: CancelRequest) -> dict[str, Any]:
    """Cancel a queued or running job; a running one stops at its next step."""
    user = services().auth.user(body.token, "train")
    if body.model_name not in {j.name for j in _visible_jobs(user)}:
        raise ApiError(404, f"No finetuning job named {body.model_name!r}")
    job = services().training.cancel(body.model_name)
    return {"message": "Cancelling", "job": _job_reply(job)}


def _job_reply(job: JobRecord) -> dict[str, Any]:
    return {
        "model_name": job.name,
        "state": job.state,
        "progress": job.progress,
        "eta": job.eta,
        "loss": job.loss,
        "error": job.error,
        "initial_model": job.initial_model,
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
    }


class JobsQuery(ApiModel):
    token: str | None = None


@api.get("/training-jobs", query=JobsQuery, tags=["Models"])
def training_jobs(query: JobsQuery) -> dict[str, list]:
    """Every finetuning job this server knows, oldest first, with state, progress and error."""
    user = services().auth.user(query.token, "inference")
    return {"jobs": [_job_reply(job) for job in _visible_jobs(user)]}


@api.get("/training-jobs/<model_name>", query=JobsQuery, tags=["Models"])
def training_job(query: JobsQuery, model_name: str) -> dict[str, Any]:
    """One job's state, progress, ETA, loss and error message."""
    user = services().auth.user(query.token, "inference")
    job = next((j for j in _visible_jobs(user) if j.name == model_name), None)
    if job is None:
        raise ApiError(404, f"No finetuning job named {model_name!r}")
    return _job_reply(job)


@api.post("/whisperseg-auth", body=TokenRequest, tags=["Models"])
def whisperseg_auth(body: TokenRequest) -> dict[str, bool]:
    """Whether a token is valid; every token is with authentication off."""
    return {"success": services().auth.is_valid(body.token)}


def main(argv: list[str] | None = None) -> None:
    settings = ServerSettings.from_args(argv)
    logging.basicConfig(level=logging.INFO)
    create_app(settings).run(host=settings.host, port=settings.port, threaded=True)


if __name__ == "__main__":
    main()
