"""Where to label next, for stored channels: their kept (or computed) segmentation runs
of the model and of the energy baseline, handed to ``whisperseg.suggest``.

It needs no job of its own: every run it reads is a segmentation run, kept once done, so
on long audio a client first POSTs /segmentation-jobs for each recording (progress, ETA,
cancel) and then asks; the answer comes from the kept runs at once. The baseline's run
is the energy segmenter's (seconds even for hours of audio), kept the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from inference.runs import RunKey
from inference.service import SegmentationService
from whisperseg.suggest import RecordingPredictions, SuggestedArea, suggest_areas

Interval = tuple[float, float]


def suggest_annotation_areas(
    service: SegmentationService,
    keys: Sequence[tuple[RunKey, RunKey]],
    annotated: Mapping[str, Sequence[Interval]],
    total_seconds: float,
    area_seconds: float | None = None,
) -> list[SuggestedArea]:
    """Areas to label next over the channels of ``keys`` ((model run, baseline run) per
    channel), outside the ``annotated`` areas of each audio_id."""
    recordings = []
    for model_key, baseline_key in keys:
        segments = service.predictions(model_key)
        baseline = segments if baseline_key == model_key else service.predictions(baseline_key)
        recordings.append(
            RecordingPredictions(
                audio_id=model_key.audio_id,
                duration=service.audio.get(model_key.audio_id).duration,
                segments=segments,
                baseline=baseline,
                annotated=tuple(annotated.get(model_key.audio_id, ())),
            )
        )
    return suggest_areas(recordings, total_seconds, area_seconds)
