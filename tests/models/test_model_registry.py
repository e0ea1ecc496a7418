"""The models folder as the source of truth: names, readiness, lazy LRU loading (model_registry)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import model_registry
from inference.service import segmenter_for
from model_registry import (
    ENERGY_MODEL,
    JOB_FILE,
    ModelNameError,
    ModelRegistry,
    UnknownModelError,
)
from whisperseg.initialize import random_tiny
from whisperseg.model import WhisperSegModel
from whisperseg.segment import Segment
from whisperseg.segmenters import served_config

SR = 16000


@pytest.fixture
def models_dir(tmp_path: Path, saved_tiny_model: Path) -> Path:
    """A models folder holding the shipped model's name and one more ready model."""
    models = tmp_path / "models"
    for name in ("whisperseg-tiny", "zz-pulled"):
        shutil.copytree(saved_tiny_model, models / name)
    return models


def _add_job_folder(models_dir: Path, name: str, state: str, tiny_folder: Path | None = None):
    """A finetuned model's folder: weights when given, and its job.json."""
    folder = models_dir / name
    if tiny_folder is None:
        folder.mkdir()
    else:
        shutil.copytree(tiny_folder, folder)
    (folder / JOB_FILE).write_text(json.dumps({"state": state, "owner": "alice"}))


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a" * 65,
        "../x",
        "/etc",
        "a/b",
        "a\\b",
        "..",
        "a..b",
        ".hidden",
        "-rf",
        "trailing.",
        "mödel",
        "ｍodel",
        "a\u200bb",
        "a b",
        "name\n",
        ENERGY_MODEL,
        "CON",
        "nul.txt",
    ],
)
def test_unsafe_names_are_refused(models_dir: Path, name: str):
    with pytest.raises(ModelNameError):
        ModelRegistry(models_dir).validate_new_name(name)


@pytest.mark.parametrize("name", ["a", "my-model_2.v1", "a" * 64, "console"])
def test_safe_new_names_pass(models_dir: Path, name: str):
    ModelRegistry(models_dir).validate_new_name(name)


@pytest.mark.parametrize("state", ["queued", "training", "done"])
def test_names_of_ready_queued_and_training_models_are_taken(
    models_dir: Path, tiny_folder: Path, state: str
):
    _add_job_folder(models_dir, "mine", state, tiny_folder if state == "done" else None)
    registry = ModelRegistry(models_dir)
    for name in ("mine", "MINE", "whisperseg-tiny", "WhisperSeg-Tiny"):
        with pytest.raises(ModelNameError, match="already exists|in use"):
            registry.validate_new_name(name)


def test_failed_and_cancelled_jobs_free_their_names_but_stray_folders_do_not(models_dir: Path):
    _add_job_folder(models_dir, "failed-one", "failed")
    _add_job_folder(models_dir, "cancelled-one", "cancelled")
    (models_dir / "stray").mkdir()
    registry = ModelRegistry(models_dir)
    registry.validate_new_name("failed-one")
    registry.validate_new_name("cancelled-one")
    with pytest.raises(ModelNameError):
        registry.validate_new_name("stray")


def test_list_ready_reads_the_folder(models_dir: Path, tiny_folder: Path):
    _add_job_folder(models_dir, "finetuned", "done", tiny_folder)
    for state in ("queued", "training", "failed", "cancelled"):
        _add_job_folder(models_dir, state, state, tiny_folder)
    shutil.copytree(tiny_folder, models_dir / ".staging.tmp")
    (models_dir / "no-weights").mkdir()
    shutil.copytree(tiny_folder, models_dir / "whisperseg-base")  # shipped, not the default
    ready = ModelRegistry(models_dir).list_ready()
    assert [(m.name, m.kind, m.owner) for m in ready] == [
        ("whisperseg-tiny", "whisperseg", None),  # the default first: frontends preselect it
        ("finetuned", "whisperseg", "alice"),
        ("whisperseg-base", "whisperseg", None),
        ("zz-pulled", "whisperseg", None),
        (ENERGY_MODEL, "energy", None),
    ]
    assert [m.can_finetune for m in ready] == [True, True, True, True, False]


def test_default_model(models_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    registry = ModelRegistry(models_dir)
    assert registry.default_model_name == "whisperseg-tiny"
    shutil.rmtree(models_dir / "whisperseg-tiny")
    assert registry.default_model_name == "zz-pulled"
    assert ModelRegistry(tmp_path_factory.mktemp("empty")).default_model_name == ENERGY_MODEL


@pytest.mark.parametrize("name", ["nope", "../whisperseg-tiny", "/etc", "queued", ""])
def test_unknown_or_unready_models_cannot_segment(models_dir: Path, name: str):
    _add_job_folder(models_dir, "queued", "queued")
    with pytest.raises(UnknownModelError):
        segmenter_for(ModelRegistry(models_dir), name, _bursts(), SR, None)


def _bursts(seconds: float = 1.0) -> np.ndarray:
    """Quiet noise with two 2 kHz tone bursts at 0.2-0.3 s and 0.6-0.75 s."""
    t = np.arange(int(seconds * SR)) / SR
    audio = np.random.default_rng(0).normal(0, 1e-3, t.size)
    for onset, offset in ((0.2, 0.3), (0.6, 0.75)):
        audio += 0.5 * np.sin(2 * np.pi * 2000 * t) * ((t >= onset) & (t < offset))
    return audio.astype(np.float32)


def test_energy_threshold_segments_without_a_folder(tmp_path: Path):
    audio = _bursts()
    segmenter = segmenter_for(ModelRegistry(tmp_path), ENERGY_MODEL, audio, SR, 0.0)
    segments = segmenter.segment(audio, SR)
    assert [(round(s.onset, 2), round(s.offset, 2), s.cluster) for s in segments] == [
        (0.2, 0.3, "vocal"),
        (0.6, 0.75, "vocal"),
    ]


@pytest.mark.slow
def test_whisperseg_segmenter_returns_segments(models_dir: Path):
    audio = _bursts(0.5)
    segmenter = segmenter_for(ModelRegistry(models_dir), "whisperseg-tiny", audio, SR, None)
    segments = segmenter.segment(audio, SR)
    assert all(isinstance(s, Segment) and 0 <= s.onset < s.offset <= 0.5 for s in segments)


def test_served_config_prefers_finetuned_settings_then_the_coarsest_step():
    model = random_tiny()
    silence = np.zeros(SR, dtype=np.float32)  # no call to read settings off

    def inference_config(model, min_frequency=None):
        return served_config(model, silence, SR, min_frequency).config

    assert inference_config(model).spec_time_step == 0.0025  # generic
    model.default_segmentation_config = {  # as config.json stores them: keys sorted
        "canary": {"sr": 32000, "spec_time_step": 0.001},
        "mouse": {"sr": 300000, "min_frequency": 35000, "spec_time_step": 0.0005},
        "zebra_finch": {"sr": 32000, "spec_time_step": 0.0025},
    }
    assert inference_config(model).spec_time_step == 0.0025
    model.default_segmentation_config["finetuned"] = {
        "sr": 300000,
        "min_frequency": 35000,
        "spec_time_step": 0.0005,
    }
    assert inference_config(model).sr == 300000
    assert inference_config(model).min_frequency == 35000
    assert inference_config(model, min_frequency=1000.0).min_frequency == 1000.0


@pytest.fixture
def load_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the folders actually loaded from disk; each load takes at least 0.2 s."""
    calls: list[str] = []
    real_load = WhisperSegModel.load

    def slow_load(folder, device=None, quantize=False):
        calls.append(Path(folder).name)
        time.sleep(0.2)
        return real_load(folder, device, quantize)

    monkeypatch.setattr(model_registry.WhisperSegModel, "load", slow_load)
    return calls


def test_models_are_cached_least_recently_used_evicted(
    models_dir: Path, tiny_folder: Path, load_calls: list[str]
):
    shutil.copytree(tiny_folder, models_dir / "third")
    registry = ModelRegistry(models_dir, max_loaded=2)
    first = registry.load("whisperseg-tiny")
    registry.load("zz-pulled")
    assert registry.load("whisperseg-tiny") is first
    registry.load("third")
    assert registry.loaded_names == ["whisperseg-tiny", "third"]
    registry.load("zz-pulled")
    assert load_calls == ["whisperseg-tiny", "zz-pulled", "third", "zz-pulled"]


def test_concurrent_requests_load_a_model_once(models_dir: Path, load_calls: list[str]):
    registry = ModelRegistry(models_dir)
    results: list[WhisperSegModel] = []
    threads = [
        threading.Thread(target=lambda: results.append(registry.load("whisperseg-tiny")))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert load_calls == ["whisperseg-tiny"]
    assert len(results) == 4 and all(model is results[0] for model in results)


def test_a_replaced_folder_is_loaded_again(models_dir: Path):
    registry = ModelRegistry(models_dir)
    old = registry.load("zz-pulled")
    random_tiny(seed=1).save(models_dir / "zz-pulled")
    assert registry.load("zz-pulled") is not old
