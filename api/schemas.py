"""Request and reply models of every route: validation, defaults and the OpenAPI document.

Request models turn the frontend's loose JSON (nulls, blanks, numbers as strings) into typed
values; reply models name every key a client reads (shared/API.md). The conversions from
domain objects to replies live here too, so the HTTP edge is the only place that knows
the API's key names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from annotations.labels import Label, label_name
from api.json_api import ApiModel
from inference.runs import RunStatus
from jobs.record import JobRecord, format_eta
from server.settings import ServerSettings
from spectrogram import SpecConfig

LIMITS = ServerSettings  # the fixed limits are class constants of the settings


class Reply(BaseModel):
    """Base of reply models: built by the server, so nothing to coerce."""

    model_config = ConfigDict(extra="forbid")


# --- Audio -------------------------------------------------------------------------------


class SpecParams(ApiModel):
    """Spectrogram parameters shared by uploads and clip requests; null/""/<=0 = default."""

    hop_length: int | None = Field(None, description="Samples between columns")
    num_spec_columns: int | None = Field(None, description="Image width; default 1000")
    sampling_rate: int | None = Field(None, le=LIMITS.MAX_SAMPLING_RATE, description="Display rate")
    spec_cal_method: str | None = Field(None, description="log-mel (default) or constant-q")
    n_fft: int | None = Field(None, le=LIMITS.MAX_N_FFT)
    bins_per_octave: int | None = None
    min_frequency: float | None = None
    max_frequency: float | None = None
    color_map: str | None = Field(
        None, description="viridis|plasma|inferno|magma|cividis|gray; anything else inferno"
    )
    brightness: float = Field(1.0, ge=0, description="Multiplicative; 1.0 = unchanged")
    contrast: float = Field(1.0, ge=0, description="Multiplicative; 1.0 = unchanged")

    def display_rate(self, source_rate: int) -> int:
        """The rate the spectrogram is computed at: the asked one, else the audio's own."""
        return self.sampling_rate if self.sampling_rate and self.sampling_rate > 0 else source_rate

    def config_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`spectrogram.resolve_config` this request sets."""
        return self.model_dump(
            include={
                "spec_cal_method",
                "n_fft",
                "bins_per_octave",
                "hop_length",
                "num_spec_columns",
                "min_frequency",
                "max_frequency",
            }
        )


class UploadForm(SpecParams):
    """Multipart form fields of /upload (the file itself is ``newAudioFile``)."""


class UploadByUrlRequest(SpecParams):
    audio_url: str


class ClipSpecRequest(SpecParams):
    audio_id: str
    start_time: float = Field(0.0, ge=0, le=LIMITS.MAX_SECONDS, description="Seconds")
    return_matrix: bool = Field(
        False,
        description="Also return 'matrix': the dB values, matrix[i] is the row at freqs[i] "
        "(lowest frequency first), one value per column",
    )


class ClipRequest(ApiModel):
    audio_id: str
    start_time: float = Field(0.0, ge=0, le=LIMITS.MAX_SECONDS, description="Seconds")
    clip_duration: float | None = Field(
        None, ge=0, le=LIMITS.MAX_SECONDS, description="Seconds; default: to the end"
    )


class VisualizationRequest(ClipRequest):
    target_length: int = Field(
        0, ge=0, le=LIMITS.MAX_VISUALIZATION_LENGTH, description="Zeros returned for an empty span"
    )


class ReleaseRequest(ApiModel):
    audio_id_list: list[str | None] = Field(default_factory=list)


class SpectrogramReply(Reply):
    spec: str = Field(description="Base64 JPEG, top row = highest frequency")
    freqs: list[float] = Field(description="Row frequencies in Hz, freqs[0] = bottom row")


class ChannelReply(SpectrogramReply):
    audio_id: str
    audio_duration: float = Field(description="Seconds")


class UploadReply(Reply):
    configurations: SpecConfig = Field(description="The effective spectrogram parameters")
    channels: list[ChannelReply]


class ClipSpecReply(SpectrogramReply):
    configurations: SpecConfig = Field(description="The effective spectrogram parameters")
    matrix: list[list[float]] | None = Field(None, description="Only with return_matrix")


class WavReply(Reply):
    wav: str = Field(description="Base64 mono 16-bit PCM WAV")


class VisualizationReply(Reply):
    wav_array: list[float]


class StatusReply(Reply):
    status: str


class ResponseReply(Reply):
    response: str


class MessageReply(Reply):
    message: str


# --- Annotations -------------------------------------------------------------------------


class AnnotationBody(BaseModel):
    """One labelled segment; keys beyond onset/offset are kept exactly as posted."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    onset: float
    offset: float


class AnnotationsPost(ApiModel):
    annotations: list[AnnotationBody]


class AnnotationVersion(Reply):
    version: str = Field(description="ISO 8601 UTC")
    annotations: list[dict[str, Any]]


class ExportQuery(ApiModel):
    format: Literal["csv", "raven", "audacity"] = "csv"


class MetadataRequest(ApiModel):
    hash_id: str | None = None
    user_profile: Any = None


class AnnotationTimeLog(ApiModel):
    log: list[Any]


# --- Models ------------------------------------------------------------------------------


class TokenRequest(ApiModel):
    token: str | None = Field(None, description="Needed only when token authentication is on")


class AreaBody(ApiModel):
    """An annotated area: seconds from the start of the recording."""

    onset: float = Field(allow_inf_nan=False)
    offset: float = Field(allow_inf_nan=False)


LabelName = str | int | float | None


class HumanLabelBody(AreaBody):
    species: LabelName = None
    individual: LabelName = None
    clustername: LabelName = None

    def to_label(self) -> Label:
        names = (self.species, self.individual, self.clustername)
        return Label(self.onset, self.offset, *map(label_name, names))


class LabelledAudio(ApiModel):
    """A channel with the areas a person annotated and the labels drawn in them."""

    audio_id: str
    annotated_areas: list[AreaBody] = Field(default_factory=list)
    human_labels: list[HumanLabelBody] = Field(default_factory=list)

    def areas(self) -> list[tuple[float, float]]:
        return [(area.onset, area.offset) for area in self.annotated_areas]

    def labels(self) -> list[Label]:
        return [label.to_label() for label in self.human_labels]


class GetLabelsRequest(TokenRequest, LabelledAudio):
    model_name: str | None = Field(None, description="Default: the shipped model")
    min_frequency: float | None = Field(None, ge=0, description="Hz; default: the model's")


class FinetuneRequest(TokenRequest):
    """One labelled channel (``audio_id`` and its areas and labels), or several in
    ``training_data``, or both: every one of them is trained on."""

    new_model_name: str
    initial_model_name: str | None = Field(None, description="Default: the shipped model")
    inital_model_name: str | None = Field(None, description="Older spelling, still accepted")
    min_frequency: float | None = Field(None, ge=0, description="Hz; default: 0")
    tolerance: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Seconds an onset or offset may be off when the job scores itself on "
        "held-back labels; default: a tenth of the median labelled call, 10 ms at least",
    )
    audio_id: str | None = Field(None, description="The single-recording form")
    annotated_areas: list[AreaBody] = Field(default_factory=list)
    human_labels: list[HumanLabelBody] = Field(default_factory=list)
    training_data: list[LabelledAudio] = Field(
        default_factory=list, description="Several labelled recordings in one job"
    )

    @model_validator(mode="after")
    def _some_recording(self) -> FinetuneRequest:
        if self.audio_id is None and not self.training_data:
            raise ValueError("give audio_id (with its areas and labels) or training_data")
        return self

    @property
    def initial_model(self) -> str | None:
        return self.initial_model_name or self.inital_model_name

    def recordings(self) -> list[LabelledAudio]:
        """Every labelled channel of the request, the single-recording form first."""
        single = []
        if self.audio_id is not None:
            single = [
                LabelledAudio(
                    audio_id=self.audio_id,
                    annotated_areas=self.annotated_areas,
                    human_labels=self.human_labels,
                )
            ]
        return single + self.training_data

    def summary(self) -> dict[str, Any]:
        """What the job record keeps of the request: no token, labels only counted."""
        recordings = self.recordings()
        return {
            "new_model_name": self.new_model_name,
            "initial_model_name": self.initial_model,
            "min_frequency": self.min_frequency,
            "audio_ids": [r.audio_id for r in recordings],
            "annotated_areas": [r.model_dump()["annotated_areas"] for r in recordings],
            "num_human_labels": sum(len(r.human_labels) for r in recordings),
        }


class SegmentationJobRequest(TokenRequest):
    audio_id: str
    model_name: str | None = Field(None, description="Default: the shipped model")
    min_frequency: float | None = Field(None, ge=0, description="Hz; default: the model's")


class CancelRequest(TokenRequest):
    model_name: str


class JobsQuery(ApiModel):
    token: str | None = None


class ModelEntry(Reply):
    model_name: str
    status: str = Field(description='"ready", or a job state: "queued", "training"')
    eta: str = Field(
        description='HH:MM:SS, "--:--:--" when unknown, or "waiting for a worker" (a queued '
        "job no live worker serves)"
    )


class ModelListReply(Reply):
    response: list[ModelEntry]

    @classmethod
    def of_models(cls, names: list[str]) -> ModelListReply:
        return cls(
            response=[ModelEntry(model_name=n, status="ready", eta=format_eta(None)) for n in names]
        )

    @classmethod
    def of_jobs(cls, jobs: list[JobRecord]) -> ModelListReply:
        return cls(
            response=[ModelEntry(model_name=j.name, status=j.state, eta=j.eta) for j in jobs]
        )


class LabelReply(Reply):
    onset: float
    offset: float
    species: str
    individual: str
    clustername: str
    confidence: float = Field(
        ge=0,
        le=1,
        description="Extension: the predicted chance that this segment is right (a calibrated "
        "probability, see README 'Confidence'); 1.0 for a person's label",
    )


class LabelsReply(Reply):
    labels: list[LabelReply]

    @classmethod
    def of(cls, labels: list[Label]) -> LabelsReply:
        return cls(
            labels=[LabelReply.model_validate(label, from_attributes=True) for label in labels]
        )


class ValidationReply(Reply):
    """Figures on the human labels a job held back from training (the last fifth of each
    recording's labels, with the annotated time after them), for the base model, the
    finetuned one and the energy threshold."""

    model_config = ConfigDict(extra="ignore")  # job.json may hold more figures

    base_segment_f1: float = Field(description="Cluster names ignored (voice activity)")
    finetuned_segment_f1: float = Field(description="Cluster names ignored (voice activity)")
    energy_segment_f1: float = Field(description="Cluster names ignored (voice activity)")
    finetuned_typed_f1: float | None = Field(
        description="Cluster names must match; only when the labels name several"
    )
    base_typed_f1: float | None = Field(
        default=None, description="The base's, cluster names matching; 0 for a base without them"
    )
    tolerance: float = Field(description="Seconds an onset or offset may be off")
    typed: bool = Field(description="Whether the labels name several call types")
    held_out_seconds: float
    held_out_segments: int
    held_out_recordings: int = Field(description="Recordings the held-back labels come from")
    verdict: Literal["better", "not better"] | None = Field(
        description='"better" when the finetuned model beats its base (on typed F1 when the '
        "labels name call types); null with too few held-back labels to judge (note says so)"
    )
    beats_energy: bool | None = Field(description="Whether it beats the energy threshold")
    kept: Literal["finetuned", "base"] = Field(
        description='"base" when the base model did better by 0.05 or more (or, with too few '
        "held-back labels, already finds them all) and is what the folder holds"
    )
    note: str = Field(description="What the figures mean, in words; may be empty")


class JobReply(Reply):
    model_name: str
    state: str = Field(description="queued, training, done, failed or cancelled")
    progress: float = Field(description="0 to 1")
    eta: str = Field(description='HH:MM:SS, or "--:--:--" when unknown')
    loss: float | None
    error: str | None
    initial_model: str
    created: str
    started: str | None
    finished: str | None
    validation: ValidationReply | None = Field(description="Once measured; None before")
    attempts: int = Field(description="Starts so far: above 1 when a lost worker's job was retried")
    history: list[str] = Field(
        description='Distributed mode: what happened, oldest first ("started on worker W at T", '
        '"requeued: worker W lost at T")'
    )
    last_event: str | None = Field(
        description="Why a queued job waits (no live worker serves its queue), else the latest "
        "of its history"
    )

    @classmethod
    def of(cls, job: JobRecord) -> JobReply:
        return cls(
            model_name=job.name,
            state=job.state,
            progress=job.progress,
            eta=job.eta,
            loss=job.loss,
            error=job.error,
            initial_model=job.initial_model,
            created=job.created,
            started=job.started,
            finished=job.finished,
            validation=job.validation
            and ValidationReply.model_validate(job.validation, from_attributes=True),
            attempts=job.attempts,
            history=list(job.history),
            last_event=job.last_event,
        )


class JobsReply(Reply):
    jobs: list[JobReply]


class WorkerJob(Reply):
    kind: str = Field(description="finetune or segment")
    name: str = Field(description="The model a finetuning job makes, a segmentation job's id")
    since: str = Field(description="When this worker took it (ISO 8601 UTC)")


class WorkerReply(Reply):
    name: str
    queues: list[str]
    device: str | None
    last_heartbeat: str | None = Field(description="ISO 8601 UTC; refreshed every 5 s")
    jobs: list[WorkerJob] = Field(description="The jobs it runs now")


class WorkersReply(Reply):
    workers: list[WorkerReply] = Field(description="Live workers; empty without --broker")


class CancelReply(Reply):
    message: str
    job: JobReply


class SegmentationJobCreated(Reply):
    job_id: str


class SegmentationJobReply(Reply):
    job_id: str
    state: str = Field(description="queued, running, done, failed or cancelled")
    progress: float = Field(description="0 to 1")
    eta: str = Field(description='HH:MM:SS, or "--:--:--" when unknown')
    labels: list[LabelReply] = Field(description="So far, in order; all of them when done")
    error: str | None
    waiting: str | None = Field(
        default=None,
        description='Why a queued job has not started, e.g. "waiting for a worker: no live '
        "worker serves the 'gpu' queue\" (distributed mode); null otherwise",
    )

    @classmethod
    def of(cls, status: RunStatus) -> SegmentationJobReply:
        labels = [Label.from_segment(s) for s in status.segments]
        return cls(
            job_id=status.run_id,
            state=status.state,
            progress=status.progress,
            eta=format_eta(status.eta_s),
            labels=LabelsReply.of(labels).labels,
            error=status.error,
            waiting=status.waiting,
        )


class AuthReply(Reply):
    success: bool


# --- Where to label next -----------------------------------------------------------------


class ChannelArea(AreaBody):
    """An area of one channel: seconds from the start of its recording."""

    audio_id: str


class SuggestAreasRequest(TokenRequest):
    audio_ids: list[str] = Field(
        min_length=1, max_length=1000, description="The channels to choose from"
    )
    model_name: str | None = Field(None, description="Default: the shipped model")
    annotated_areas: list[ChannelArea] = Field(
        default_factory=list, description="Already labelled: suggestions never overlap these"
    )
    total_seconds: float = Field(
        16.0, gt=0, le=86_400, description="The suggested areas together last at most this"
    )
    area_seconds: float | None = Field(
        None,
        ge=0.05,
        le=3600,
        description="Length of one area; default: a quarter of the budget within 1-8 s, "
        "longer for long calls",
    )
    min_frequency: float | None = Field(None, ge=0, description="Hz; default: the model's")

    @model_validator(mode="after")
    def _consistent(self) -> SuggestAreasRequest:
        if self.area_seconds is not None and self.area_seconds > self.total_seconds:
            raise ValueError("area_seconds must not exceed total_seconds")
        for area in self.annotated_areas:
            if area.offset < area.onset:
                raise ValueError(
                    f"annotated_areas: offset {area.offset} is before onset {area.onset}"
                )
        return self

    def channels(self) -> list[str]:
        """The audio ids in order, each once."""
        return list(dict.fromkeys(self.audio_ids))

    def areas_by_channel(self) -> dict[str, list[tuple[float, float]]]:
        areas: dict[str, list[tuple[float, float]]] = {}
        for area in self.annotated_areas:
            areas.setdefault(area.audio_id, []).append((area.onset, area.offset))
        return areas


class SuggestedAreaReply(Reply):
    audio_id: str
    onset: float = Field(description="Seconds")
    offset: float = Field(description="Seconds")
    score: float = Field(
        description="What the area was chosen with (higher: more to learn): expected wrong "
        "segments, disagreements with the energy baseline and calls in it, lowered for "
        "recordings and call kinds already suggested"
    )


class SuggestAreasReply(Reply):
    model_name: str
    areas: list[SuggestedAreaReply] = Field(description="Best first")

    @classmethod
    def of(cls, model_name: str, areas: list[Any]) -> SuggestAreasReply:
        return cls(
            model_name=model_name,
            areas=[SuggestedAreaReply.model_validate(a, from_attributes=True) for a in areas],
        )
