"""CTranslate2 inference: a converted copy of a model folder decodes windows 2-3x faster.

Torch stays the training engine and the fallback. A model folder's converted copy lives
in ``<folder>/ct2/`` with ``source.json`` naming the weights it was made from, so a copy
of older weights is never used (:func:`current_copy`) and is made again
(:func:`convert`). Weights are stored in float16 and run as int8 on the CPU and
int8_float16 on a GPU.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch

CT2_FOLDER = "ct2"
SOURCE_FILE = "source.json"
LOCK_FILE = ".ct2.lock"
# One weights file, or the index of shards (which a new save rewrites too).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def available() -> bool:
    """Whether the ctranslate2 package is installed."""
    return importlib.util.find_spec("ctranslate2") is not None


def weights_identity(folder: Path) -> dict[str, int | str]:
    """Name, size and modification time of a folder's weights file (or shard index)."""
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            info = path.stat()
            return {"file": name, "size": info.st_size, "mtime_ns": info.st_mtime_ns}
    raise FileNotFoundError(f"no weights ({' or '.join(WEIGHT_FILES)}) in {folder}")


def current_copy(folder: Path) -> Path | None:
    """The converted copy of ``folder`` if it was made from the weights there now."""
    copy = Path(folder) / CT2_FOLDER
    try:
        source = json.loads((copy / SOURCE_FILE).read_text())
        return copy if source == weights_identity(Path(folder)) else None
    except (OSError, ValueError):
        return None


def convert(folder: Path) -> Path:
    """Make ``<folder>/ct2`` from the Hugging Face weights in ``folder``; returns it.

    Processes take turns (a lock file in the folder) and a copy made meanwhile by another
    is used as it is; the copy appears whole or not at all. Callers in threads hold the
    model load lock (``whisperseg.model.make_ct2_copy``): the converter uses transformers.
    """
    folder = Path(folder)
    with open(folder / LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return current_copy(folder) or _convert(folder)


def _convert(folder: Path) -> Path:
    from ctranslate2.converters import TransformersConverter

    identity = weights_identity(folder)
    staging = folder / f".{CT2_FOLDER}.{uuid.uuid4().hex}.tmp"
    try:
        TransformersConverter(str(folder), low_cpu_mem_usage=True).convert(
            str(staging), quantization="float16", force=True
        )
        (staging / SOURCE_FILE).write_text(json.dumps(identity))
        target = folder / CT2_FOLDER
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def compute_type(device: torch.device) -> str:
    return "int8_float16" if device.type == "cuda" else "int8"


class Ct2Decoder:
    """Greedy decoding of feature windows with a converted copy, restricted to given tokens."""

    def __init__(self, copy: Path, device: torch.device, suppress_ids: list[int]):
        import ctranslate2

        index = device.index or 0
        self.model = ctranslate2.models.Whisper(
            str(copy),
            device=device.type,
            device_index=index,
            compute_type=compute_type(device),
            intra_threads=torch.get_num_threads() if device.type == "cpu" else 1,
        )
        self.suppress_ids = suppress_ids

    def generate(
        self, features: torch.Tensor, prompt: list[int], max_length: int, logits: bool = False
    ) -> list[tuple[list[int], torch.Tensor | None]]:
        """Each window's generated token ids (the prompt and end token left out), with
        ``logits`` also the logits of each generated token's step (tokens, vocabulary;
        suppressed tokens at the lowest float), on the CPU."""
        import ctranslate2

        batch = np.ascontiguousarray(features.detach().to("cpu", torch.float32).numpy())
        results = self.model.generate(
            ctranslate2.StorageView.from_array(batch),
            [prompt] * batch.shape[0],
            beam_size=1,
            max_length=max_length,
            suppress_tokens=self.suppress_ids,
            suppress_blank=False,
            return_logits_vocab=logits,
        )
        generated = []
        for result in results:
            ids = result.sequences_ids[0]
            steps = None
            if logits:
                rows = [_host_array(view) for view in result.logits[0][: len(ids)]]
                steps = torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, 1)
            generated.append((ids, steps))
        return generated


def _host_array(view: object) -> np.ndarray:
    """A StorageView's values in host memory (on a GPU through the CUDA array interface)."""
    if hasattr(view, "__cuda_array_interface__"):
        return torch.as_tensor(view, device="cuda").float().cpu().numpy()
    return np.asarray(view, dtype=np.float32)
