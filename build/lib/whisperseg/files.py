"""Segment audio files and turn their segments into tables, for ``segment`` and
``segment-corpus`` alike, so a file segmented in a corpus gives what it gives alone."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from whisperseg.export import segment_annotations
from whisperseg.model import WhisperSegModel
from whisperseg.model_cache import ModelCache, folder_identity
from whisperseg.segment import Segment
from whisperseg.segmentation import (
    ProgressCallback,
    SegmentationConfig,
    config_for_species,
    segment_recording,
)

TABLE_COLUMNS = ["file", "onset", "offset", "species", "individual", "cluster", "confidence"]
# Table columns named otherwise in an annotation.
_ROW_KEYS = {"cluster": "clustername"}


_models = ModelCache(max_loaded=2)


def load_model(
    path: str | Path, device: str | None = None, backend: str = "auto"
) -> WhisperSegModel:
    """The model of a folder for inference (int8 on the CPU), kept while its weights stay:
    a worker segments many files with one model."""
    folder = Path(path).resolve()
    identity = folder_identity(folder) if (folder / "config.json").exists() else None
    return _models.get(
        (str(folder), device, backend),
        identity,
        lambda: WhisperSegModel.load(folder, device=device, quantize=True, backend=backend),
    )


def segmentation_config(
    model: WhisperSegModel, species: str | None, overrides: dict
) -> SegmentationConfig:
    """The species' settings (the model's own first) with the given values (None: kept)."""
    config = config_for_species(species, model)
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def segment_file(
    model: WhisperSegModel,
    path: str | Path,
    config: SegmentationConfig,
    species: str | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[Segment], float]:
    """(segments, seconds of audio) of one file, read mono at its own rate."""
    import librosa

    audio, sr = librosa.load(path, sr=None, mono=True)
    return segment_recording(model, audio, sr, config, species, progress), len(audio) / sr


def segment_rows(file: str, segments: list[Segment]) -> list[dict]:
    """One row per segment (columns :data:`TABLE_COLUMNS`); a finetuned model's cluster
    string is split into species, individual and cluster name."""
    rows = [{"file": file, **row} for row in segment_annotations(segments)]
    return [
        {column: row[_ROW_KEYS.get(column, column)] for column in TABLE_COLUMNS} for row in rows
    ]


def rows_text(rows: list[dict], fmt: str) -> str:
    """The rows as JSON or CSV (columns :data:`TABLE_COLUMNS`)."""
    import pandas as pd

    if fmt == "json":
        return json.dumps(rows, indent=2)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS).to_csv(index=False)
