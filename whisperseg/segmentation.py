"""Segment a recording of any length with a WhisperSeg model (WHISPERSEG.md, Segmentation).

Windows are cut, featurised and decoded one batch at a time, so memory stays
bounded whatever the recording's length. Several trials shift the windows by a
fraction of a window; their segments are merged by DBSCAN consensus. Each segment's
confidence is calibrated from the trials' agreement, the decoder's boundary scores and
its band level (``whisperseg.confidence``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace

import librosa
import numpy as np
import torch

from whisperseg import confidence
from whisperseg.consensus import consensus
from whisperseg.features import FeatureConfig, window_features
from whisperseg.model import WhisperSegModel
from whisperseg.segment import Segment
from whisperseg.target_text import TokenSegment

ProgressCallback = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class SegmentationConfig:
    """How to segment one species' recordings. ``sr=None`` keeps the recording's own rate.

    ``feature_rate`` (None: ``sr``) is the rate the samples are declared to have when
    they become features, so a new species can be shown to a model at a rate and
    speed it knows (see ``whisperseg.view``); times, ``spec_time_step`` and
    ``min_frequency`` stay in the recording's own seconds and Hz. Predicted segments
    of one cluster closer than ``min_gap`` are joined.
    """

    sr: int | None = None
    min_frequency: float = 0.0
    spec_time_step: float = 0.0025
    min_segment_length: float = 0.01
    eps: float = 0.02
    num_trials: int = 3
    batch_size: int | None = None
    feature_rate: int | None = None
    min_gap: float = 0.0

    @classmethod
    def from_dict(cls, values: dict) -> SegmentationConfig:
        """Keep the known keys of a config dict (published configs carry extra ones)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known and v is not None})


SPECIES_DEFAULTS: dict[str, SegmentationConfig] = {
    "zebra_finch": SegmentationConfig(32000, 0, 0.0025, 0.01, 0.02, 3),
    "bengalese_finch": SegmentationConfig(32000, 0, 0.0025, 0.01, 0.02, 3),
    "marmoset": SegmentationConfig(48000, 0, 0.0025, 0.01, 0.02, 3),
    "mouse": SegmentationConfig(300000, 35000, 0.0005, 0.01, 0.02, 3),
    "human": SegmentationConfig(16000, 0, 0.01, 0.1, 0.2, 1),
    "meerkat": SegmentationConfig(16000, 0, 0.001, 0.01, 0.02, 3),
    "canary": SegmentationConfig(32000, 0, 0.001, 0.01, 0.02, 3),
}


def config_for_species(
    species: str | None, model: WhisperSegModel | None = None
) -> SegmentationConfig:
    """The model's own per-species defaults first, then the published table, then generic."""
    if model is not None and species in model.default_segmentation_config:
        return SegmentationConfig.from_dict(model.default_segmentation_config[species])
    return SPECIES_DEFAULTS.get(species or "", SegmentationConfig())


def time_step_from_labels(durations: Sequence[float]) -> float:
    """spec_time_step for new data: about 1/25 of the median segment, rounded up to 0.5 ms."""
    if len(durations) == 0:
        raise ValueError("need at least one labelled segment to derive a time step")
    return max(0.0005, math.ceil(float(np.median(durations)) / 25 / 0.0005) * 0.0005)


def _default_batch_size(device: torch.device) -> int:
    """Bigger batches mean fewer sequential decoder steps; the CPU gains up to ~16."""
    return 64 if device.type == "cuda" else 16


def _window_starts(num_samples: int, window: int, trial: int, num_trials: int) -> list[int]:
    """Trial k's windows: the audio left-padded by k / num_trials of a window."""
    shift = round(window * trial / num_trials)
    return list(range(-shift, num_samples, window))


def _batched(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def join_windows(
    windows: list[tuple[int, list[TokenSegment]]],
    features: FeatureConfig,
    max_index: int,
    names: dict[int, str],
) -> list[Segment]:
    """One trial's windows as segments in seconds, joining segments cut by a window edge;
    each segment's confidence is the decoder's score of its boundaries (the lower one of
    the parts for a joined segment)."""
    step = features.seconds_per_time_token
    joined: list[Segment] = []
    cut_at_edge = False
    for start, token_segments in windows:
        origin = start / features.sr
        for position, token in enumerate(token_segments):
            cluster = names.get(token.cluster_id, str(token.cluster_id))
            onset, offset = origin + token.onset * step, origin + token.offset * step
            continues = cut_at_edge and position == 0 and token.onset == 0
            if continues and joined[-1].cluster == cluster:
                score = min(joined[-1].confidence, token.score)
                joined[-1] = replace(joined[-1], offset=offset, confidence=score)
            else:
                joined.append(Segment(onset, offset, cluster, token.score))
        cut_at_edge = bool(token_segments) and token_segments[-1].offset >= max_index
    return joined


def _clip(segments: list[Segment], duration: float, min_length: float) -> list[Segment]:
    clipped = (
        replace(s, onset=max(0.0, s.onset), offset=min(duration, s.offset)) for s in segments
    )
    return [s for s in clipped if s.duration >= min_length]


def scale_times(segments: Sequence[Segment], factor: float) -> list[Segment]:
    """Segments with onsets and offsets multiplied by ``factor`` (declared to real seconds)."""
    return [replace(s, onset=s.onset * factor, offset=s.offset * factor) for s in segments]


def join_gaps(segments: list[Segment], min_gap: float, min_length: float) -> list[Segment]:
    """Join segments of one cluster less than ``min_gap`` apart, then drop short ones.

    A finetuned model tends to split a long call into fragments; the shortest gap and
    the shortest segment a person labelled say what cannot be a real gap or call.
    ``segments`` must be sorted by onset.
    """
    joined: list[Segment] = []
    for s in segments:
        last = joined[-1] if joined else None
        if last and last.cluster == s.cluster and s.onset - last.offset < min_gap:
            joined[-1] = replace(last, offset=max(last.offset, s.offset))
        else:
            joined.append(s)
    return [s for s in joined if s.duration >= min_length]


def feature_config(config: SegmentationConfig, sr: int, total_spec_columns: int) -> FeatureConfig:
    """Features of audio at ``sr`` as ``config`` shows it to the model (its declared rate)."""
    rate = config.feature_rate or sr
    if rate == sr:
        return FeatureConfig(sr, config.spec_time_step, config.min_frequency, total_spec_columns)
    hop = max(1, round(config.spec_time_step * sr))
    return FeatureConfig(rate, hop / rate, config.min_frequency * rate / sr, total_spec_columns)


def _finalise(segments: list[Segment], widening: float) -> list[Segment]:
    """Undo the FFT widening, round to milliseconds, drop empty and duplicate segments."""
    unique: dict[tuple[float, float, str], Segment] = {}
    for s in segments:
        onset, offset = round(s.onset + widening, 3), round(s.offset - widening, 3)
        if offset > onset:
            unique.setdefault((onset, offset, s.cluster), replace(s, onset=onset, offset=offset))
    return sorted(unique.values(), key=lambda s: (s.onset, s.offset))


def segment_recording(
    model: WhisperSegModel,
    audio: np.ndarray,
    sr: int,
    config: SegmentationConfig,
    species: str | None = None,
    progress: ProgressCallback | None = None,
) -> list[Segment]:
    """Segments of a mono recording, sorted by onset, each with its confidence: the
    calibrated chance that it is right (``whisperseg.confidence``)."""
    segments, evidence = segment_with_evidence(model, audio, sr, config, species, progress)
    name = confidence.SCORED if model.scores_boundaries else confidence.UNSCORED
    return confidence.with_confidence(segments, evidence, model.calibrations[name])


def segment_with_evidence(
    model: WhisperSegModel,
    audio: np.ndarray,
    sr: int,
    config: SegmentationConfig,
    species: str | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[Segment], dict[str, np.ndarray]]:
    """(segments with their trial vote as confidence, their evidence for calibration)."""
    audio = np.asarray(audio, dtype=np.float32)
    if config.sr and sr != config.sr:
        audio = librosa.resample(audio, orig_sr=sr, target_sr=config.sr, res_type="soxr_hq")
        sr = config.sr
    if audio.size == 0:
        return [], confidence.whisperseg_evidence([], [], audio, sr, config.min_frequency)
    features = feature_config(config, sr, model.total_spec_columns)
    seconds_per_declared = features.sr / sr
    trials = max(1, config.num_trials)
    jobs = [
        (trial, start)
        for trial in range(trials)
        for start in _window_starts(len(audio), features.window_samples, trial, trials)
    ]
    batch_size = config.batch_size or _default_batch_size(model.device)
    results: list[list[tuple[int, list[TokenSegment]]]] = [[] for _ in range(trials)]
    done = 0
    for batch in _batched(jobs, batch_size):
        decoded = model.generate(window_features(audio, [s for _, s in batch], features), species)
        for (trial, start), token_segments in zip(batch, decoded, strict=True):
            results[trial].append((start, token_segments))
        done += len(batch)
        if progress:
            progress(done / len(jobs))
    duration = len(audio) / sr
    per_trial = [
        _clip(
            scale_times(
                join_windows(windows, features, model.max_time_index, model.cluster_names),
                seconds_per_declared,
            ),
            duration,
            config.min_segment_length,
        )
        for windows in results
    ]
    merged = consensus([[replace(s, confidence=1.0) for s in t] for t in per_trial], config.eps)
    widening = features.fft_widening * seconds_per_declared
    finalised = _finalise(merged, widening)
    if config.min_gap > 0:
        finalised = join_gaps(finalised, config.min_gap, config.min_segment_length)
    narrowed = [  # the trials' segments where the final ones are: FFT widening undone
        [replace(s, onset=s.onset + widening, offset=s.offset - widening) for s in t]
        for t in per_trial
    ]
    evidence = confidence.whisperseg_evidence(finalised, narrowed, audio, sr, config.min_frequency)
    return finalised, evidence
