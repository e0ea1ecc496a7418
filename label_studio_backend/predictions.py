"""A Label Studio task -> its prediction: one region per segment of the project's model.

The segments are exactly ``/get-labels``'s for the same recording and model (the same
``SegmentationService`` run: kept, shared while running, keyed by the model's weights),
with no annotated areas. Each region's ``score`` is its segment's ``confidence``; the
task's ``score`` is the lowest region score (0.0 when nothing was found), so sorting the
Data Manager by prediction score, ascending, puts the least certain recordings first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from inference.service import SegmentationService
from label_studio_backend.errors import LabelStudioError
from label_studio_backend.label_config import RESULT_TYPE, AudioLabelling
from label_studio_backend.schemas import LsRegion, LsRegionValue, LsTask, LsTaskPrediction
from label_studio_backend.task_audio import TaskAudio
from whisperseg.segment import Segment


def task_score(segments: Sequence[Segment]) -> float:
    """The least certain segment's confidence; 0.0 for none (nothing found: worth a look)."""
    return min((s.confidence for s in segments), default=0.0)


def regions(segments: Sequence[Segment], labelling: AudioLabelling) -> list[LsRegion]:
    return [
        LsRegion(
            id=uuid.uuid4().hex[:10],
            from_name=labelling.from_name,
            to_name=labelling.to_name,
            type=RESULT_TYPE,
            value=LsRegionValue(
                start=round(s.onset, 6),
                end=round(s.offset, 6),
                channel=0,
                labels=[labelling.label_for(s.cluster)],
            ),
            score=round(s.confidence, 6),
        )
        for s in segments
    ]


def predict_task(
    task: LsTask,
    labelling: AudioLabelling,
    model: str,
    audio: TaskAudio,
    segmentation: SegmentationService,
) -> LsTaskPrediction:
    """Segment the task's audio with ``model``; LabelStudioError and the audio and fetch
    errors (UrlFetchError, AudioDecodeError, AudioTooLarge) when it cannot be."""
    data = task.data.values
    if labelling.data_key not in data:
        raise LabelStudioError(
            400,
            f"no audio URL under the data key {labelling.data_key!r} (the labelling config's "
            f"audio value); the task's keys: {sorted(data)}",
        )
    audio_id = audio.audio_id(data[labelling.data_key])
    segments = segmentation.predictions(segmentation.key(audio_id, model, None))
    return LsTaskPrediction(
        result=regions(segments, labelling), score=task_score(segments), model_version=model
    )
