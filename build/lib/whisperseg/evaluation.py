"""Score a segmenter on annotated recordings, each at its own species' settings."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from whisperseg.autoconfig import coarsest, resampled_to_model_rate
from whisperseg.datasets import AnnotatedRecording, held_out_group, load_recording
from whisperseg.metrics import evaluate_files
from whisperseg.model import WhisperSegModel
from whisperseg.segment import Segment
from whisperseg.segmentation import SegmentationConfig, segment_recording
from whisperseg.segmenters import served_config

# Segments one annotated recording (at its own species settings), for scoring.
RecordingSegmenter = Callable[[AnnotatedRecording], list[Segment]]


def recording_config(recording: AnnotatedRecording, num_trials: int = 3) -> SegmentationConfig:
    """The species settings stored with an annotated recording."""
    return SegmentationConfig(
        sr=recording.species_sr,
        min_frequency=recording.min_frequency,
        spec_time_step=recording.spec_time_step,
        min_segment_length=recording.min_segment_length,
        eps=recording.eps,
        num_trials=num_trials,
    )


def whisperseg_segmenter(model: WhisperSegModel, num_trials: int = 3) -> RecordingSegmenter:
    def run(recording: AnnotatedRecording) -> list[Segment]:
        config = recording_config(recording, num_trials)
        return segment_recording(model, recording.audio, recording.sr, config)

    return run


def served_segmenter(model: WhisperSegModel, num_trials: int = 3) -> RecordingSegmenter:
    """As ``/get-labels`` runs a model given no species (``served_config``), with the band
    floor the recording's data set names."""

    def run(recording: AnnotatedRecording) -> list[Segment]:
        audio, sr, floor = recording.audio, recording.sr, recording.min_frequency or None
        config = served_config(model, audio, sr, floor).config
        return segment_recording(model, audio, sr, replace(config, num_trials=num_trials))

    return run


def held_out_segmenter(model: WhisperSegModel, num_trials: int = 3) -> RecordingSegmenter:
    """Each recording at its data set's settings, except those far from the model's rate
    (mouse ultrasound at 250 kHz): the model only knows them declared at its own rate,
    as ``/get-labels`` shows them without a species."""
    listed, served = whisperseg_segmenter(model, num_trials), served_segmenter(model, num_trials)
    model_rate = coarsest(model.default_segmentation_config).sr or 0

    def run(recording: AnnotatedRecording) -> list[Segment]:
        natural = resampled_to_model_rate(recording.species_sr, model_rate)
        return listed(recording) if natural else served(recording)

    return run


@dataclass(frozen=True)
class EvaluationReport:
    """Metrics per group of files (summed over the group's files) and compute time."""

    groups: dict[str, dict]
    audio_seconds: float
    compute_seconds: float

    @property
    def real_time_factor(self) -> float:
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0


def group_name(path: Path) -> str:
    """Held-out files by their group, other files by their folder."""
    return held_out_group(path) or path.parent.name


def evaluate(
    segmenter: RecordingSegmenter,
    paths: Iterable[Path],
    tolerance: float | None = None,
    match_cluster: bool = False,
    progress: Callable[[Path], None] | None = None,
) -> EvaluationReport:
    """Segment every recording and score it against its labels.

    ``tolerance`` None uses each file's own (its json's ``tolerance``). Clusters are
    ignored by default: the shared recordings are voice-activity labels.
    """
    pairs: dict[str, list] = defaultdict(list)
    tolerances: dict[str, float] = {}
    frame_steps: dict[str, float] = {}
    audio_seconds = compute_seconds = 0.0
    for path in paths:
        recording = load_recording(path)
        started = time.perf_counter()
        predicted = segmenter(recording)
        compute_seconds += time.perf_counter() - started
        audio_seconds += recording.duration
        group = group_name(Path(path))
        pairs[group].append((predicted, list(recording.segments)))
        tolerances[group] = tolerance if tolerance is not None else recording.tolerance
        frame_steps[group] = recording.time_per_frame_for_scoring
        if progress:
            progress(Path(path))
    groups = {
        group: evaluate_files(
            file_pairs, tolerances[group], frame_steps[group], match_cluster=match_cluster
        )
        for group, file_pairs in sorted(pairs.items())
    }
    return EvaluationReport(groups, audio_seconds, compute_seconds)
