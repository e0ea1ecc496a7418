"""Published WhisperSeg ``-ct2`` checkpoints: CTranslate2 weights and an ``hf_model/`` folder.

WhisperSeg's converter writes ``model.bin`` (usually int8_float16), CTranslate2's
``config.json`` and vocabulary, and the original Hugging Face config and tokenizer into
``hf_model/``; there are no torch weights. Importing such a folder rebuilds the Hugging
Face weights from ``model.bin`` (int8 weights dequantized), so the model can be
finetuned and served by torch like any other, and keeps the published CTranslate2 files
as the folder's converted copy (``ct2/``): CTranslate2 then decodes with exactly the
published weights, and the copy is never converted again.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import uuid
from pathlib import Path

from transformers import WhisperConfig, WhisperForConditionalGeneration

from whisperseg import ct2
from whisperseg.conversion import ctranslate2_state_dict, read_ctranslate2_variables
from whisperseg.folder_swap import replace_folder

HF_FOLDER = "hf_model"
CT2_FILES = ("model.bin", "config.json", "vocabulary.json", "vocabulary.txt")


def is_published_ct2(folder: Path) -> bool:
    """A CTranslate2 WhisperSeg folder that has not been imported yet (no torch weights)."""
    folder = Path(folder)
    has_weights = any((folder / name).is_file() for name in ct2.WEIGHT_FILES)
    return (
        not has_weights
        and (folder / "model.bin").is_file()
        and (folder / HF_FOLDER / "config.json").is_file()
    )


def import_published_ct2(folder: Path) -> Path:
    """Turn a published ``-ct2`` folder into a model folder in place (once; returns it).

    The new layout is built in a hidden sibling and swapped in whole, so a crash leaves
    the published folder as it was. Processes take turns through a lock file inside it
    (retired with the published layout, so nothing is left behind).
    """
    folder = Path(folder)
    with open(folder / ".import.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_published_ct2(folder):
            return folder  # imported meanwhile
        staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.import"
        try:
            _write_imported(folder, staging)
            replace_folder(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def _write_imported(published: Path, staging: Path) -> None:
    """torch weights, config and tokenizer at the top; the published files in ``ct2/``."""
    config = WhisperConfig.from_pretrained(str(published / HF_FOLDER))
    variables = read_ctranslate2_variables(published / "model.bin")
    # The weights are the truth where a saved config disagrees (e.g. positions cut to 500).
    config.max_source_positions = variables["encoder/position_encodings/encodings"].shape[0]
    config.vocab_size = variables["decoder/embeddings/weight"].shape[0]
    network = WhisperForConditionalGeneration(config)
    network.load_state_dict(ctranslate2_state_dict(variables), strict=True)
    network.half().save_pretrained(str(staging))
    for path in (published / HF_FOLDER).iterdir():
        if path.is_file() and path.name != "config.json":
            shutil.copy2(path, staging / path.name)
    copy = staging / ct2.CT2_FOLDER
    copy.mkdir()
    for name in CT2_FILES:
        if (published / name).is_file():
            shutil.copy2(published / name, copy / name)
    (copy / ct2.SOURCE_FILE).write_text(json.dumps(ct2.weights_identity(staging)))
