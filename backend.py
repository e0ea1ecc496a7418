"""The annotation server: Flask app factory and its routes (contract: shared/API.md).

Each route turns a validated request (``api/schemas.py``) into one call of a domain module
and its result into a reply model; errors raised below become JSON replies through
``api/errors.py``. Success codes: 200 for reads (GET routes and ``/get-audio-clip-*``), 201
for every other POST. Run ``python backend.py --help`` for flags, or with gunicorn (one
worker: audio lives in this process's memory)::

    gunicorn --workers 1 --threads 8 --bind 127.0.0.1:8050 'backend:create_app_from_env()'
"""

from __future__ import annotations

import base64
import logging
import sys
import weakref
from typing import Any, BinaryIO

import numpy as np
from flask import Flask, Response, current_app, request
from flask_cors import CORS

import label_studio_backend
from annotations.labels import LabelledRecording, merge_labels, training_clips
from api.errors import ERROR_STATUSES
from api.json_api import ApiError, JsonApi
from api.schemas import (
    AnnotationsPost,
    AnnotationTimeLog,
    AnnotationVersion,
    AuthReply,
    CancelReply,
    CancelRequest,
    ChannelReply,
    ClipRequest,
    ClipSpecReply,
    ClipSpecRequest,
    ExportQuery,
    FinetuneRequest,
    GetLabelsRequest,
    JobReply,
    JobsQuery,
    JobsReply,
    LabelledAudio,
    LabelsReply,
    MessageReply,
    MetadataRequest,
    ModelListReply,
    ReleaseRequest,
    ResponseReply,
    SegmentationJobCreated,
    SegmentationJobReply,
    SegmentationJobRequest,
    SpecParams,
    SpectrogramReply,
    StatusReply,
    SuggestAreasReply,
    SuggestAreasRequest,
    TokenRequest,
    UploadByUrlRequest,
    UploadForm,
    UploadReply,
    VisualizationReply,
    VisualizationRequest,
    WavReply,
    WorkerReply,
    WorkersReply,
)
from audio.codec import encode_wav_int16, to_float32
from audio.url_fetch import fetch_url
from audio.waveform import visualization_array
from inference.runs import RunKey
from inference.suggestions import suggest_annotation_areas
from jobs.finetune import finetune_config
from model_registry import ENERGY_MODEL
from server.services import Services
from server.settings import ServerSettings, SettingsError
from spectrogram import SpecConfig, compute_db, render_jpeg_base64, resolve_config, row_frequencies
from whisperseg.export import FORMATS

log = logging.getLogger(__name__)

api = JsonApi(title="WhisperSeg annotation server", version="1.0")


def services() -> Services:
    return current_app.extensions["whisperseg"]


def create_app(settings: ServerSettings) -> Flask:
    """A ready-to-serve app whose durable state lives under ``settings.data_dir``.

    Its services stop when the app is garbage-collected or the process exits; call
    ``app.extensions["whisperseg"].close()`` to stop them sooner (tests do).
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.json.sort_keys = False
    started = Services.start(settings)
    app.extensions["whisperseg"] = started
    weakref.finalize(app, started.close)
    CORS(app)
    api.init_app(app, ERROR_STATUSES)
    label_studio_backend.install(app)
    return app


def create_app_from_env() -> Flask:
    """App configured from ``WHISPERSEG_*`` environment variables (the gunicorn entry point)."""
    logging.basicConfig(level=logging.INFO)
    return create_app(ServerSettings.from_env())


# --- Audio -------------------------------------------------------------------------------


@api.post("/upload", form=UploadForm, files=["newAudioFile"], reply=UploadReply, tags=["Audio"])
def upload(form: UploadForm) -> UploadReply:
    """Store an uploaded file, one audio_id per channel, and return each channel's spectrogram."""
    file = request.files.get("newAudioFile")
    if file is None:
        raise ApiError(400, "No file in the multipart field 'newAudioFile'")
    return _store_and_describe(file.stream, form)  # decoded from the spooled file, not a copy


@api.post("/upload-by-url", body=UploadByUrlRequest, reply=UploadReply, tags=["Audio"])
def upload_by_url(body: UploadByUrlRequest) -> UploadReply:
    """Download audio_url (http/https; no private addresses unless allowed), store like /upload."""
    settings = services().settings
    data = fetch_url(
        body.audio_url,
        max_bytes=min(settings.url_fetch_max_bytes, settings.max_upload_bytes),
        timeout_s=settings.url_fetch_timeout_s,
        allow_private=settings.allow_private_urls,
    )
    return _store_and_describe(data, body)


def _store_and_describe(data: bytes | BinaryIO, params: SpecParams) -> UploadReply:
    """Store every channel (or none, if a reply cannot be made) and draw each one."""
    audio = services().audio

    def overview(rate: int, frames: int) -> SpecConfig:
        return _spec_config(rate, frames, params)

    decoded, ids = audio.add_file(data, check=overview)
    config = overview(decoded.sample_rate, len(decoded.samples))
    duration = len(decoded.samples) / decoded.sample_rate
    with audio.released_on_error(ids):
        images = [_spectrogram(audio_id, 0.0, config, params)[0] for audio_id in ids]
    channels = [
        ChannelReply(audio_id=audio_id, audio_duration=duration, **image.model_dump())
        for audio_id, image in zip(ids, images, strict=True)
    ]
    return UploadReply(configurations=config, channels=channels)


@api.post(
    "/get-audio-clip-spec", body=ClipSpecRequest, reply=ClipSpecReply, status=200, tags=["Audio"]
)
def get_audio_clip_spec(body: ClipSpecRequest) -> ClipSpecReply:
    """Spectrogram of hop_length * num_spec_columns samples from start_time (zero-padded)."""
    channel = services().audio.get(body.audio_id)
    config = _spec_config(channel.sample_rate, channel.num_samples, body)
    image, db = _spectrogram(body.audio_id, body.start_time, config, body)
    reply = ClipSpecReply(**image.model_dump(), configurations=config)
    if body.return_matrix:
        reply.matrix = np.round(db, 2).tolist()
    return reply


def _spec_config(source_rate: int, source_samples: int, params: SpecParams) -> SpecConfig:
    """The request's effective spectrogram parameters, within the server's limits.

    A spectrogram may always span the whole file (its cost grows with the columns, not
    the hop): only a span beyond the file is bounded by max_clip_samples.
    """
    rate = params.display_rate(source_rate)
    samples = -(-source_samples * rate // source_rate)  # at the display rate, rounded up
    limits = services().settings
    span_limit = max(limits.max_clip_samples, samples)
    return resolve_config(
        rate,
        samples,
        **params.config_options(),
        max_columns=limits.max_spec_columns,
        max_span_samples=span_limit,
    )


def _spectrogram(
    audio_id: str, start_time: float, config: SpecConfig, params: SpecParams
) -> tuple[SpectrogramReply, np.ndarray]:
    """(image and row frequencies, dB matrix) of one channel from ``start_time``."""
    samples = services().audio.samples_at(audio_id, config.sampling_rate)
    db = compute_db(samples, round(start_time * config.sampling_rate), config)
    image = render_jpeg_base64(db, params.color_map, params.brightness, params.contrast)
    return SpectrogramReply(spec=image, freqs=row_frequencies(config).tolist()), db


@api.post("/get-audio-clip-wav", body=ClipRequest, reply=WavReply, status=200, tags=["Audio"])
def get_audio_clip_wav(body: ClipRequest) -> WavReply:
    """Mono 16-bit PCM WAV (base64) at the original rate, zero-padded to clip_duration."""
    channel = services().audio.get(body.audio_id)
    limit = services().settings.max_clip_samples
    clip = channel.clip(body.start_time, body.clip_duration, limit, pad=True)
    wav = encode_wav_int16(clip, channel.sample_rate)
    return WavReply(wav=base64.b64encode(wav).decode("ascii"))


@api.post(
    "/get-audio-clip-for-visualization",
    body=VisualizationRequest,
    reply=VisualizationReply,
    status=200,
    tags=["Audio"],
)
def get_audio_clip_for_visualization(body: VisualizationRequest) -> VisualizationReply:
    """Z-scored samples of the span (not padded); above 100,000 samples ~10,000 min/max values."""
    channel = services().audio.get(body.audio_id)
    span = channel.clip(body.start_time, body.clip_duration, services().settings.max_clip_samples)
    return VisualizationReply(wav_array=visualization_array(span, body.target_length).tolist())


@api.post("/release-audio-given-ids", body=ReleaseRequest, reply=StatusReply, tags=["Audio"])
def release_audio_given_ids(body: ReleaseRequest) -> StatusReply:
    """Free these channels now; unknown ids and nulls are ignored."""
    services().audio.release(body.audio_id_list)
    return StatusReply(status="success")


@api.get("/get-status", reply=ResponseReply, tags=["Audio"])
def get_status() -> ResponseReply:
    """Keep-alive ping."""
    return ResponseReply(response="success")


# --- Annotations -------------------------------------------------------------------------


@api.post("/post-annotations", body=AnnotationsPost, reply=MessageReply, tags=["Annotations"])
@api.post(
    "/post-annotations/<hash_id>", body=AnnotationsPost, reply=MessageReply, tags=["Annotations"]
)
def post_annotations(body: AnnotationsPost, hash_id: str = "") -> MessageReply:
    """Store the list as a new version for hash_id (none and "null" are valid keys too)."""
    annotations = [a.model_dump(exclude_unset=True) for a in body.annotations]
    services().annotations.add_version(hash_id, annotations)
    return MessageReply(message="Annotations inserted successfully.")


@api.get("/get-annotations", reply=list[AnnotationVersion], tags=["Annotations"])
@api.get("/get-annotations/<hash_id>", reply=list[AnnotationVersion], tags=["Annotations"])
def get_annotations(hash_id: str = "") -> list[AnnotationVersion]:
    """Every version, oldest first: [{"version": ISO date, "annotations": [...]}]; unknown -> []."""
    return [AnnotationVersion(**v) for v in services().annotations.versions(hash_id)]


@api.get("/export-annotations", query=ExportQuery, tags=["Annotations"])
@api.get("/export-annotations/<hash_id>", query=ExportQuery, tags=["Annotations"])
def export_annotations(query: ExportQuery, hash_id: str = "") -> Response:
    """The latest version as a file: ?format=csv (default), raven (selection table), audacity."""
    annotations = services().annotations.latest(hash_id)
    if annotations is None:
        raise ApiError(404, f"No annotations stored for hash_id {hash_id!r}")
    export = FORMATS[query.format]
    disposition = f'attachment; filename="{export.file_name(hash_id)}"'
    headers = {"Content-Disposition": disposition}
    return Response(export.render(annotations), mimetype=export.media_type, headers=headers)


@api.post("/get-metadata/", body=MetadataRequest, reply=list[dict[str, Any]], tags=["Annotations"])
def get_metadata(body: MetadataRequest) -> list[dict[str, Any]]:
    """Metadata of an annotation project; [] since no metadata service is configured."""
    return []


@api.post(
    "/annotation/annotation-time/", body=AnnotationTimeLog, reply=MessageReply, tags=["Annotations"]
)
def annotation_time(body: AnnotationTimeLog) -> MessageReply:
    """Store the frontend's annotation-time log."""
    services().annotations.add_time_log(body.log)
    return MessageReply(message="Annotation time log stored.")


# --- Models ------------------------------------------------------------------------------


@api.post(
    "/list-models-available-for-inference", body=TokenRequest, reply=ModelListReply, tags=["Models"]
)
def list_models_for_inference(body: TokenRequest) -> ModelListReply:
    """Models get-labels can use now (status "ready")."""
    access = services().access
    models = access.visible_models(access.user(body.token))
    return ModelListReply.of_models([m.name for m in models])


@api.post(
    "/list-models-available-for-finetuning",
    body=TokenRequest,
    reply=ModelListReply,
    tags=["Models"],
)
def list_models_for_finetuning(body: TokenRequest) -> ModelListReply:
    """Models a finetuning job can start from."""
    access = services().access
    models = access.visible_models(access.user(body.token), finetunable=True)
    return ModelListReply.of_models([m.name for m in models])


@api.post(
    "/list-models-training-in-progress", body=TokenRequest, reply=ModelListReply, tags=["Models"]
)
def list_models_training(body: TokenRequest) -> ModelListReply:
    """Queued and training jobs with a live ETA (HH:MM:SS)."""
    access = services().access
    jobs = access.visible_jobs(access.user(body.token))
    return ModelListReply.of_jobs([job for job in jobs if job.active])


@api.post("/get-labels", body=GetLabelsRequest, reply=LabelsReply, tags=["Models"])
def get_labels(body: GetLabelsRequest) -> LabelsReply:
    """The model's segments outside the annotated areas, the human labels inside them."""
    key = _run_key(body.token, body.audio_id, body.model_name, body.min_frequency)
    predictions = services().segmentation.predictions(key)
    return LabelsReply.of(merge_labels(predictions, body.labels(), body.areas()))


def _run_key(
    token: str | None, audio_id: str, model: str | None, min_frequency: float | None
) -> RunKey:
    """What a segmentation of this channel depends on, for a model this user may use."""
    access = services().access
    name = access.usable_model(model, access.user(token))
    return services().segmentation.key(audio_id, name, min_frequency)


@api.post(
    "/segmentation-jobs",
    body=SegmentationJobRequest,
    reply=SegmentationJobCreated,
    tags=["Models"],
)
def create_segmentation_job(body: SegmentationJobRequest) -> SegmentationJobCreated:
    """Segment a whole channel in the background; answers at once with the job's id."""
    key = _run_key(body.token, body.audio_id, body.model_name, body.min_frequency)
    return SegmentationJobCreated(job_id=services().segmentation.submit(key).run_id)


@api.get("/segmentation-jobs/<job_id>", reply=SegmentationJobReply, tags=["Models"])
def segmentation_job(job_id: str) -> SegmentationJobReply:
    """State, progress, ETA, and the labels found so far (all of them when done)."""
    return SegmentationJobReply.of(services().segmentation.status(job_id))


@api.post(
    "/segmentation-jobs/<job_id>/cancel",
    reply=SegmentationJobReply,
    tags=["Models"],
)
def cancel_segmentation_job(job_id: str) -> SegmentationJobReply:
    """Cancel a segmentation job: a queued one at once, a running one after its chunk."""
    return SegmentationJobReply.of(services().segmentation.cancel(job_id))


@api.post(
    "/suggest-annotation-areas",
    body=SuggestAreasRequest,
    reply=SuggestAreasReply,
    status=200,
    tags=["Models"],
)
def suggest_annotation_areas_route(body: SuggestAreasRequest) -> SuggestAreasReply:
    """Where to label next: areas of these channels, best first, within total_seconds,
    outside the annotated areas (from kept segmentation runs where they exist)."""
    access = services().access
    model = access.usable_model(body.model_name, access.user(body.token))
    keys = [
        (
            _run_key(body.token, audio_id, model, body.min_frequency),
            _run_key(body.token, audio_id, ENERGY_MODEL, body.min_frequency),
        )
        for audio_id in body.channels()
    ]
    areas = suggest_annotation_areas(
        services().segmentation,
        keys,
        body.areas_by_channel(),
        body.total_seconds,
        body.area_seconds,
    )
    return SuggestAreasReply.of(model, areas)


@api.post("/finetune-whisperseg", body=FinetuneRequest, reply=MessageReply, tags=["Models"])
def finetune_whisperseg(body: FinetuneRequest) -> MessageReply:
    """Queue finetuning on the annotated areas; answers at once, trains in the background."""
    access, user = services().access, services().access.user(body.token, "train")
    recordings = [_labelled_recording(r) for r in body.recordings()]
    services().models.validate_new_name(body.new_model_name)
    initial = access.usable_model(body.initial_model, user)
    examples = training_clips(recordings, min_frequency=body.min_frequency or 0.0)
    config = finetune_config(services().settings.finetune_max_steps, body.tolerance)
    services().training.submit(body.new_model_name, initial, examples, user, body.summary(), config)
    return MessageReply(message="Training")


def _labelled_recording(labelled: LabelledAudio) -> LabelledRecording:
    channel = services().audio.get(labelled.audio_id)
    samples = to_float32(channel.samples)
    areas, labels = labelled.areas(), labelled.labels()
    return LabelledRecording(samples, channel.sample_rate, areas, labels, labelled.audio_id)


@api.post("/cancel-finetuning", body=CancelRequest, reply=CancelReply, tags=["Models"])
def cancel_finetuning(body: CancelRequest) -> CancelReply:
    """Cancel a queued or running job; a running one stops at its next step."""
    access = services().access
    access.visible_job(body.model_name, access.user(body.token, "train"))
    job = services().training.cancel(body.model_name)
    return CancelReply(message="Cancelling", job=JobReply.of(job))


@api.get("/training-jobs", query=JobsQuery, reply=JobsReply, tags=["Models"])
def training_jobs(query: JobsQuery) -> JobsReply:
    """Every finetuning job this server knows, oldest first, with state, progress and error."""
    access = services().access
    jobs = access.visible_jobs(access.user(query.token))
    return JobsReply(jobs=[JobReply.of(job) for job in jobs])


@api.get("/training-jobs/<model_name>", query=JobsQuery, reply=JobReply, tags=["Models"])
def training_job(query: JobsQuery, model_name: str) -> JobReply:
    """One job's state, progress, ETA, loss and error message."""
    access = services().access
    return JobReply.of(access.visible_job(model_name, access.user(query.token)))


@api.get("/workers", reply=WorkersReply, tags=["Models"])
def workers() -> WorkersReply:
    """The live Celery workers: queues, device, last heartbeat, the jobs each runs."""
    cluster = services().cluster
    found = cluster.workers() if cluster is not None else []
    return WorkersReply(workers=[WorkerReply(**w) for w in found])


@api.post("/whisperseg-auth", body=TokenRequest, reply=AuthReply, tags=["Models"])
def whisperseg_auth(body: TokenRequest) -> AuthReply:
    """Whether a token is valid; every token is with authentication off."""
    return AuthReply(success=services().access.auth.is_valid(body.token))


label_studio_backend.declare_routes(api)  # Label Studio's ML-backend protocol, /label-studio


def main(argv: list[str] | None = None) -> None:
    try:
        settings = ServerSettings.from_args(argv)
    except SettingsError as exc:
        sys.exit(f"backend.py: {exc}")
    logging.basicConfig(level=logging.INFO)
    create_app(settings).run(host=settings.host, port=settings.port, threaded=True)


if __name__ == "__main__":
    main()
