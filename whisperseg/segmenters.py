"""What segments a recording as the server serves it: a WhisperSeg model with the settings
for that recording, or the energy baseline; and the one rule for those settings.

A finetuned model segments with the settings its job chose (saved under
:data:`FINETUNED_CONFIG_KEY`); any other model with settings read off the recording
(``whisperseg.autoconfig``), so a 16 kHz mammal is not segmented as a 32 kHz finch.
``/get-labels``, segmentation jobs, the evaluation and the benches all go through
:func:`served_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from whisperseg import confidence
from whisperseg.autoconfig import SettingsChoice, settings_for_recording
from whisperseg.energy import EnergyParams, energy_segments
from whisperseg.model import WhisperSegModel
from whisperseg.segment import Segment
from whisperseg.segmentation import SegmentationConfig, segment_recording

# Key of the segmentation settings a finetuned model was trained with.
FINETUNED_CONFIG_KEY = "finetuned"


class Segmenter(Protocol):
    """Segments stretches of one recording, with settings fixed for that recording."""

    @property
    def context_seconds(self) -> float:
        """How much audio around a call the segmenter looks at (sizes chunk margins)."""
        ...

    def segment(self, audio: np.ndarray, sr: int) -> list[Segment]: ...


def served_config(
    model: WhisperSegModel, audio: np.ndarray, sr: int, min_frequency: float | None = None
) -> SettingsChoice:
    """The settings ``model`` segments ``audio`` with when no species is named, and why.

    ``min_frequency`` overrides the band floor.
    """
    configs = model.default_segmentation_config
    if FINETUNED_CONFIG_KEY in configs:
        config = SegmentationConfig.from_dict(configs[FINETUNED_CONFIG_KEY])
        if min_frequency is not None:
            config = replace(config, min_frequency=min_frequency)
        return SettingsChoice(config, "the settings the model was finetuned with")
    return settings_for_recording(configs, audio, sr, min_frequency)


@dataclass(frozen=True)
class WhisperSegSegmenter:
    model: WhisperSegModel
    config: SegmentationConfig

    def segment(self, audio: np.ndarray, sr: int) -> list[Segment]:
        return segment_recording(self.model, audio, sr, self.config)

    @property
    def context_seconds(self) -> float:
        """One decoding window of the recording."""
        return self.model.total_spec_columns * self.config.spec_time_step


@dataclass(frozen=True)
class EnergySegmenter:
    """``min_frequency`` can raise the band floor, never lower it (``EnergyParams.with_floor``).
    Its segments' confidence is calibrated from their level and length
    (``whisperseg.confidence``)."""

    min_frequency: float | None = None
    cluster: str = "vocal"

    def segment(self, audio: np.ndarray, sr: int) -> list[Segment]:
        params = EnergyParams.with_floor(self.min_frequency)
        found = energy_segments(audio, sr, params, self.cluster)
        evidence = confidence.energy_evidence(found, audio, sr, self.min_frequency)
        calibration = confidence.default_calibrations()[confidence.ENERGY]
        return confidence.with_confidence(found, evidence, calibration)

    @property
    def context_seconds(self) -> float:
        """Frames, smoothing and the longest call it joins: well under a second."""
        return 1.0
