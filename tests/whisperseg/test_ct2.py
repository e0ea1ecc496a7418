"""CTranslate2 inference: converted copies, their freshness, agreement with torch, fallback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import SHIPPED_MODEL

from model_registry import ModelRegistry
from whisperseg import ct2
from whisperseg.datasets import find_recordings, load_recording, split_recordings
from whisperseg.evaluation import recording_config
from whisperseg.metrics import evaluate_files
from whisperseg.model import WhisperSegModel, is_quantized, make_ct2_copy
from whisperseg.segmentation import segment_recording

pytestmark = pytest.mark.skipif(not ct2.available(), reason="ctranslate2 is not installed")


def test_a_converted_copy_is_kept_beside_the_model_and_made_again_for_new_weights(
    tiny_folder: Path,
) -> None:
    assert ct2.current_copy(tiny_folder) is None
    copy = make_ct2_copy(tiny_folder)
    assert copy == tiny_folder / "ct2" and (copy / "model.bin").is_file()
    assert ct2.current_copy(tiny_folder) == copy
    assert make_ct2_copy(tiny_folder) == copy  # a current copy is not converted again

    weights = tiny_folder / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # new weights
    assert ct2.current_copy(tiny_folder) is None
    assert make_ct2_copy(tiny_folder) == copy and ct2.current_copy(tiny_folder) == copy


def test_auto_decodes_with_torch_when_there_is_no_copy_and_with_ct2_when_there_is(
    tiny_folder: Path,
) -> None:
    plain = WhisperSegModel.load(tiny_folder, device="cpu", backend="auto")
    assert plain.fast_decoder is None
    forced = WhisperSegModel.load(tiny_folder, device="cpu", backend="ct2")  # converts
    assert forced.fast_decoder is not None
    again = WhisperSegModel.load(tiny_folder, device="cpu", backend="auto")
    assert again.fast_decoder is not None


def test_the_server_decodes_with_torch_int8_on_the_cpu(tiny_folder: Path) -> None:
    """Measured faster than CTranslate2 int8 on a 2-core CPU; a GPU server uses ct2."""
    model = ModelRegistry(tiny_folder.parent, device="cpu").load("tiny")
    assert model.fast_decoder is None and is_quantized(model.network)
    assert ct2.current_copy(tiny_folder) is None


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED_MODEL.is_dir(), reason="shipped model missing")
def test_ct2_and_torch_find_the_same_segments_on_held_out_recordings(
    shared_data: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "shipped"
    WhisperSegModel.load(SHIPPED_MODEL, device="cpu").save(folder)
    torch_model = WhisperSegModel.load(folder, device="cpu", quantize=True)
    ct2_model = WhisperSegModel.load(folder, device="cpu", backend="ct2")
    pairs = []
    for path in split_recordings(find_recordings(shared_data / "zebra_finch"))[1][:6]:
        recording = load_recording(path)
        config = recording_config(recording)
        found = [
            segment_recording(m, recording.audio, recording.sr, config)
            for m in (torch_model, ct2_model)
        ]
        pairs.append((found[1], found[0]))
    agreement = evaluate_files(pairs, tolerance=0.01)
    print("CTranslate2 against torch, segment F1:", agreement["segment_f1"])
    assert agreement["segment_f1"] >= 0.99, agreement
