"""The ML-backend protocol's request and reply shapes, as Label Studio 1.23 sends and reads them.

Requests (``label_studio/ml/api_connector.py`` of the ``label-studio`` package):

- ``POST /setup``: ``{"project": "<id>.<ts>", "schema": "<View>...", "hostname",
  "access_token", "extra_params"}``; the reply's ``model_version`` is stored and compared
  with the tasks' predictions (tasks already predicted by that version are not asked again);
- ``POST /predict``: ``{"tasks": [{"id", "data": {...}, ...}], "project", "label_config",
  "params": {...}}``; the reply is ``{"results": [one item per task, in order]}``, each
  ``{"result": [regions], "score", "model_version"}``;
- ``POST /webhook``: ``{"action": "START_TRAINING", "project": {"id", ...}}`` from the
  training button, and the annotation events (``ANNOTATION_CREATED`` ...); a reply's
  ``job`` names the training job, which Label Studio asks about at ``POST /job_status``;
- ``POST /train``: the older training call, ``{"project": "<id>.<ts>", "annotations": [...]}``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.json_api import ApiModel


class LsSetupRequest(ApiModel):
    project: str | int | None = None
    label_config: str | None = Field(None, alias="schema")


class LsTaskData(ApiModel):
    """A task's data: any keys (the labelling config's ``$key`` names the audio URL's)."""

    model_config = ConfigDict(extra="allow")

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LsTask(ApiModel):
    id: int
    data: LsTaskData = Field(default_factory=LsTaskData)


class LsProjectRef(ApiModel):
    """The project object of a webhook (Label Studio sends all its fields; ``id`` is read)."""

    id: int | str | None = None


class LsPredictRequest(ApiModel):
    tasks: list[LsTask] = Field(min_length=1)
    project: str | int | None = None
    label_config: str | None = None


class LsWebhookRequest(ApiModel):
    action: str
    project: LsProjectRef | None = None


class LsTrainRequest(ApiModel):
    project: str | int | None = None


class LsJobStatusRequest(ApiModel):
    job: str


class LsReply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LsRegionValue(LsReply):
    start: float  # seconds from the start of the recording
    end: float
    channel: int
    labels: list[str]


class LsRegion(LsReply):
    id: str
    from_name: str
    to_name: str
    type: str
    value: LsRegionValue
    score: float  # the segment's confidence (0-1)


class LsTaskPrediction(LsReply):
    result: list[LsRegion]
    score: float  # the least confident region's confidence; 0.0 with no region
    model_version: str


class LsTaskError(LsReply):
    """A task that could not be predicted: no ``result`` key, so Label Studio logs the
    message and stores nothing for it (the task is asked again next time)."""

    task: int
    error: str


class LsPredictReply(LsReply):
    results: list[LsTaskPrediction | LsTaskError]
    model_version: str


class LsSetupReply(LsReply):
    model_version: str


class LsHealthReply(LsReply):
    status: str
    model_class: str


class LsTrainReply(LsReply):
    job: str
    state: str
    model_version: str  # the model the job starts from
    message: str


class LsJobStatusReply(LsReply):
    job: str
    job_status: str  # queued | started | finished | failed | stopped
    model_version: str | None  # the project's model once the job has ended
    verdict: str | None


class LsStatusReply(LsReply):
    status: str
    message: str
