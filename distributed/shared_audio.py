"""Audio a job needs, written by the server where every worker reads it: by content hash.

The folder is ``<data dir>/shared-audio`` on storage all machines mount (the worker's
``--data-dir``); a task names a file, not a path, so each machine may mount it anywhere.
16-bit samples are kept as FLAC (lossless, about half the size), float samples as float
WAV, so a worker reads back exactly the samples the server holds. The same audio shared
twice is one file.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np
import soundfile as sf

FOLDER_NAME = "shared-audio"


def audio_folder(data_dir: Path) -> Path:
    return Path(data_dir) / FOLDER_NAME


def _stored(samples: np.ndarray) -> np.ndarray:
    data = samples if samples.dtype == np.int16 else samples.astype(np.float32)
    return np.ascontiguousarray(data)


def file_name(samples: np.ndarray, sr: int) -> str:
    """The name these mono samples (int16 or float32) are shared under."""
    data = _stored(samples)
    digest = hashlib.sha256(f"{data.dtype.str}:{sr}:".encode() + data.tobytes()).hexdigest()
    return f"{digest}.flac" if data.dtype == np.int16 else f"{digest}.wav"


def write(folder: Path, name: str, samples: np.ndarray, sr: int) -> None:
    """Write the file ``name`` unless it is there (atomically: readers never see half)."""
    path = folder / name
    if path.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    kind = ("FLAC", "PCM_16") if name.endswith(".flac") else ("WAV", "FLOAT")
    try:
        sf.write(temporary, _stored(samples), sr, format=kind[0], subtype=kind[1])
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def share(folder: Path, samples: np.ndarray, sr: int) -> str:
    """The name of the file under ``folder`` holding these samples, written if new."""
    name = file_name(samples, sr)
    write(folder, name, samples, sr)
    return name


def load(folder: Path, name: str) -> tuple[np.ndarray, int]:
    """(samples as they were shared, rate)."""
    if Path(name).name != name:
        raise ValueError(f"not a shared audio file name: {name!r}")
    dtype = "int16" if name.endswith(".flac") else "float32"
    samples, sr = sf.read(folder / name, dtype=dtype)
    return samples, sr
