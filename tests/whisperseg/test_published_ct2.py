"""Published ``-ct2`` WhisperSeg checkpoints (CTranslate2 weights + hf_model/) load unchanged."""

from __future__ import annotations

import json
import shutil
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch
from conftest import SHIPPED_MODEL
from flask import Flask
from flask.testing import FlaskClient

from whisperseg import ct2, hub
from whisperseg.datasets import load_recording
from whisperseg.initialize import random_tiny
from whisperseg.metrics import evaluate_files
from whisperseg.model import WhisperSegModel
from whisperseg.published_ct2 import is_published_ct2
from whisperseg.segment import Segment

pytestmark = pytest.mark.skipif(not ct2.available(), reason="ctranslate2 is not installed")
HELD_OUT_ADULT = "zebra_finch/adults/zebra_finch_g4p5U-f00049.wav"


def publish_ct2(model_folder: Path, out: Path) -> Path:
    """What WhisperSeg's converter publishes: int8_float16 model.bin, config and tokenizer
    of the Hugging Face model in hf_model/, no torch weights."""
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(model_folder)).convert(str(out), quantization="int8_float16")
    (out / "hf_model").mkdir()
    for path in model_folder.iterdir():
        if path.suffix == ".json" and path.name != "generation_config.json":
            shutil.copy2(path, out / "hf_model" / path.name)
    return out


def test_a_published_ct2_folder_is_imported_once_with_its_weights_and_config(
    tmp_path: Path,
) -> None:
    original = random_tiny(d_model=32)
    original.cluster_codebook = {"vocal": 0, "trill": 1}
    original.save(tmp_path / "tiny")
    published = publish_ct2(tmp_path / "tiny", tmp_path / "tiny-ct2")
    published_bin = (published / "model.bin").read_bytes()
    hf_config = published / "hf_model" / "config.json"
    saved = json.loads(hf_config.read_text())
    hf_config.write_text(json.dumps({**saved, "max_source_positions": 1500}))  # as Whisper's
    assert is_published_ct2(published)

    model = WhisperSegModel.load(published, device="cpu", backend="auto")

    assert not is_published_ct2(published)
    assert (published / "model.safetensors").is_file()
    assert ct2.current_copy(published) == published / "ct2"
    assert (published / "ct2" / "model.bin").read_bytes() == published_bin  # not re-converted
    assert model.fast_decoder is not None  # auto decodes with the published CTranslate2 copy
    assert model.cluster_codebook == {"vocal": 0, "trill": 1}
    assert model.total_spec_columns == original.total_spec_columns
    assert model.network.config.max_source_positions == 500  # the weights' positions win
    for name, weight in original.network.state_dict().items():
        imported = model.network.state_dict()[name]
        step = weight.abs().amax(dim=-1, keepdim=True) / 127 if weight.ndim == 2 else 0
        assert torch.all((imported - weight).abs() <= step + 1e-3), name  # int8 rounding only


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED_MODEL.is_dir(), reason="shipped model missing")
def test_get_labels_with_a_published_ct2_checkpoint_matches_its_source_model(
    make_app, shared_data: Path, tmp_path: Path
) -> None:
    app: Flask = make_app()
    publish_ct2(SHIPPED_MODEL, tmp_path / "models" / "whisperseg-tiny-ct2")
    client: FlaskClient = app.test_client()
    wav = shared_data / HELD_OUT_ADULT
    reply = client.post(
        "/upload",
        data={"newAudioFile": (wav.open("rb"), wav.name)},
        content_type="multipart/form-data",
    )
    audio_id = reply.get_json()["channels"][0]["audio_id"]
    found = {}
    for name in ("whisperseg-tiny", "whisperseg-tiny-ct2"):
        reply = client.post("/get-labels", json={"audio_id": audio_id, "model_name": name})
        assert reply.status_code == 201, reply.get_json()
        found[name] = [
            Segment(x["onset"], x["offset"], "vocal") for x in reply.get_json()["labels"]
        ]
    truth = load_recording(wav).segments
    pairs = [(found["whisperseg-tiny-ct2"], found["whisperseg-tiny"])]
    agreement = evaluate_files(pairs, tolerance=0.01, match_cluster=False)["segment_f1"]
    accuracy = evaluate_files(
        [(found["whisperseg-tiny-ct2"], truth)], tolerance=0.01, match_cluster=False
    )["segment_f1"]
    print(f"published ct2 against its source: {agreement:.3f}; against the labels {accuracy:.3f}")
    assert agreement >= 0.97 and accuracy >= 0.9


def test_pulling_a_ct2_checkpoint_keeps_its_hf_model_files_and_imports_it(
    tmp_path: Path, tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything up to the network call: the hub's files, filtered by the pull's patterns."""
    hub_repo = publish_ct2(tiny_folder, tmp_path / "hub")
    asked = []

    def fake_download(repo_id: str, local_dir: Path, allow_patterns: list[str]) -> None:
        asked.append(repo_id)
        for path in hub_repo.rglob("*"):
            name = path.relative_to(hub_repo).as_posix()
            if path.is_file() and any(fnmatch(name, p) for p in allow_patterns):
                (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, Path(local_dir) / name)

    monkeypatch.setattr(hub, "snapshot_download", fake_download)
    folder = hub.pull("whisperseg-base-animal-vad-ct2", tmp_path / "models")

    assert asked == ["nccratliri/whisperseg-base-animal-vad-ct2"]
    assert folder == tmp_path / "models" / "whisperseg-base-animal-vad-ct2"
    assert ct2.current_copy(folder) == folder / "ct2"
    assert [p.name for p in (tmp_path / "models").iterdir()] == [folder.name]
    assert WhisperSegModel.load(folder, device="cpu").total_spec_columns == 1000
