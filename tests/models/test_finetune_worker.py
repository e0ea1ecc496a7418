"""Finetuning jobs: lifecycle, failures, cancelling, restarts (finetune_worker)."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import jobs.store
from annotations.labels import Label, LabelledRecording, training_clips
from finetune_worker import FinetuneWorker
from jobs.record import INTERRUPTED, JobRecord, UnknownJobError, format_eta
from model_registry import (
    ENERGY_MODEL,
    JOB_FILE,
    ModelNameError,
    ModelRegistry,
    UnknownModelError,
)
from whisperseg import adaptation, ct2
from whisperseg.adaptation import AdaptationConfig
from whisperseg.initialize import random_tiny
from whisperseg.segmenters import FINETUNED_CONFIG_KEY, served_config
from whisperseg.training import TrainingConfig, TrainingExample

SR = 16000
FAST = AdaptationConfig(  # two steps before validation, one after it on all labels
    training=TrainingConfig(max_steps=2, batch_size=1, warmup_steps=1, augment=False),
    final_steps=1,
    num_trials=1,
)


@pytest.fixture(scope="module")
def examples() -> list[TrainingExample]:
    """Two annotated seconds of noise with labelled calls, as /finetune-whisperseg makes them."""
    audio = np.random.default_rng(0).normal(0, 0.05, 3 * SR).astype(np.float32)
    labels = [Label(0.3, 0.5, "finch", "b1", "A"), Label(1.2, 1.4, "finch", "b1", "B")]
    return training_clips([LabelledRecording(audio, SR, [(0.0, 2.0)], labels)], 0.0025)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    random_tiny().save(tmp_path / "whisperseg-tiny")
    return ModelRegistry(tmp_path)


@pytest.fixture
def worker(registry: ModelRegistry) -> Iterator[FinetuneWorker]:
    worker = FinetuneWorker(registry, write_interval_s=0.0)
    yield worker
    worker.close(timeout=60)


class Gate:
    """Holds training after each step until released; records what was visible meanwhile."""

    def __init__(self, worker: FinetuneWorker):
        self.worker = worker
        self.paused = threading.Event()
        self.release = threading.Event()
        self.seen: list[tuple[JobRecord, dict]] = []

    def after_step(self, name: str) -> None:
        on_disk = json.loads((self.worker.registry.models_dir / name / JOB_FILE).read_text())
        self.seen.append((self.worker.job(name), on_disk))
        self.paused.set()
        self.release.wait(30)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch, worker: FinetuneWorker) -> Iterator[Gate]:
    """Training pauses after every step until ``gate.release`` is set."""
    gate = Gate(worker)
    real_finetune = adaptation.finetune

    def gated_finetune(model, examples, config, progress, should_stop):
        name = next(r.name for r in worker.jobs() if r.state == "training")

        def report(p):
            progress(p)
            gate.after_step(name)

        return real_finetune(model, examples, config, progress=report, should_stop=should_stop)

    monkeypatch.setattr(adaptation, "finetune", gated_finetune)
    yield gate
    gate.release.set()


def wait_until_finished(worker: FinetuneWorker, name: str, timeout: float = 120) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = worker.job(name)
        if record is not None and not record.active:
            return record
        time.sleep(0.02)
    raise AssertionError(f"job {name} still {worker.job(name)}")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "--:--:--"), (math.inf, "--:--:--"), (0, "00:00:00"), (61.4, "00:01:01"),
     (3 * 3600 + 5, "03:00:05"), (-3, "00:00:00")],
)  # fmt: skip
def test_format_eta(seconds, text):
    assert format_eta(seconds) == text


@pytest.mark.slow
def test_job_lifecycle_to_a_ready_model(worker, registry, examples, gate):
    gate.release.set()
    inference_model = registry.load("whisperseg-tiny")
    weights_before = inference_model.network.model.encoder.conv1.weight.clone()
    request = {"audio_id": "abc", "token": "secret"}
    submitted = worker.submit("finch-v1", "whisperseg-tiny", examples, "alice", request, FAST)
    assert submitted.state == "queued" and submitted.eta == "--:--:--"

    done = wait_until_finished(worker, "finch-v1")
    assert done.state == "done", done.error
    assert (done.progress, done.eta, done.owner) == (1.0, "00:00:00", "alice")
    assert done.loss is not None and done.started and done.finished
    progress = [record.progress for record, _ in gate.seen]  # after each of the 3 steps
    assert len(progress) == 3 and 0 < progress[0] < progress[1] < progress[2] == 1.0
    assert all(record.state == "training" and record.eta_s is not None for record, _ in gate.seen)
    assert gate.seen[0][0].eta_s > gate.seen[-1][0].eta_s == 0
    validation = dataclasses.asdict(done.validation)
    too_few = validation["held_out_segments"] < adaptation.MIN_HELD_OUT_SEGMENTS
    assert validation["verdict"] in ((None,) if too_few else ("better", "not better"))
    assert set(validation) >= {"base_segment_f1", "finetuned_segment_f1", "energy_segment_f1"}
    assert [on_disk["state"] for _, on_disk in gate.seen] == ["training"] * 3
    assert [on_disk["progress"] for _, on_disk in gate.seen] == progress

    folder = registry.models_dir / "finch-v1"
    assert json.loads((folder / JOB_FILE).read_text())["state"] == "done"
    assert json.loads((folder / JOB_FILE).read_text())["validation"] == validation
    card = (folder / "README.md").read_text()
    assert "held-back labels" in card and f"{validation['finetuned_segment_f1']:.3f}" in card
    assert json.loads((folder / JOB_FILE).read_text())["request"] == {"audio_id": "abc"}
    assert [p.name for p in registry.models_dir.iterdir() if p.name.startswith(".")] == []
    assert ("finch-v1", "alice") in [(m.name, m.owner) for m in registry.list_ready()]

    assert ct2.current_copy(folder) is None  # on the CPU, torch int8 serves it (faster here)
    trained = registry.load("finch-v1")
    assert list(trained.default_segmentation_config)[0] == FINETUNED_CONFIG_KEY
    config = served_config(trained, np.zeros(SR), SR).config  # what the job chose
    assert config.sr == SR and config.min_segment_length > 0
    assert any(name.endswith("A") for name in trained.cluster_codebook)
    # training used its own copy: the cached inference model is untouched
    assert registry.load("whisperseg-tiny") is inference_model
    assert torch.equal(inference_model.network.model.encoder.conv1.weight, weights_before)


@pytest.mark.slow
def test_training_does_not_block_other_requests(worker, registry, examples, gate):
    worker.submit("busy", "whisperseg-tiny", examples, config=FAST)
    assert gate.paused.wait(60)
    assert worker.job("busy").state == "training"
    assert [m.name for m in registry.list_ready()] == ["whisperseg-tiny", ENERGY_MODEL]
    assert registry.load("whisperseg-tiny") is not None
    with pytest.raises(ModelNameError, match="in use"):
        registry.validate_new_name("busy")
    gate.release.set()
    assert wait_until_finished(worker, "busy").state == "done"


@pytest.mark.slow
def test_a_failing_job_is_recorded_and_the_worker_goes_on(worker, registry, examples):
    unlabelled = [TrainingExample(examples[0].audio, SR, (), 0.0025)]
    worker.submit("broken", "whisperseg-tiny", unlabelled, config=FAST)
    worker.submit("next", "whisperseg-tiny", examples, config=FAST)
    failed = wait_until_finished(worker, "broken")
    assert failed.state == "failed"
    assert failed.error and "no labelled segments" in failed.error
    assert wait_until_finished(worker, "next").state == "done"
    assert "broken" not in [m.name for m in registry.list_ready()]
    registry.validate_new_name("broken")  # a failed job frees its name


def test_submit_refuses_taken_names_and_unknown_initial_models(worker, examples):
    with pytest.raises(ModelNameError):
        worker.submit("whisperseg-tiny", "whisperseg-tiny", examples, config=FAST)
    with pytest.raises(ModelNameError):
        worker.submit("../escape", "whisperseg-tiny", examples, config=FAST)
    for initial in ("missing", ENERGY_MODEL, "../whisperseg-tiny"):
        with pytest.raises(UnknownModelError):
            worker.submit("new", initial, examples, config=FAST)
    assert worker.jobs() == []


@pytest.mark.slow
def test_cancel_queued_and_running_jobs(worker, registry, examples, gate):
    worker.submit("running", "whisperseg-tiny", examples, config=FAST)
    worker.submit("waiting", "whisperseg-tiny", examples, config=FAST)
    assert gate.paused.wait(60)
    assert worker.job("waiting").state == "queued"

    assert worker.cancel("waiting").state == "cancelled"
    on_disk = json.loads((registry.models_dir / "waiting" / JOB_FILE).read_text())
    assert on_disk["state"] == "cancelled"

    worker.cancel("running")
    gate.release.set()
    assert wait_until_finished(worker, "running").state == "cancelled"
    assert not (registry.models_dir / "running" / "config.json").exists()
    assert [m.name for m in registry.list_ready()] == ["whisperseg-tiny", ENERGY_MODEL]
    with pytest.raises(UnknownJobError):
        worker.cancel("running")

    worker.submit("running", "whisperseg-tiny", examples, config=FAST)  # the name is free again
    assert wait_until_finished(worker, "running").state == "done"


@pytest.mark.slow
def test_a_job_is_listed_cancelled_only_once_its_name_is_free(worker, examples, gate, monkeypatch):
    """A client that sees "cancelled" may reuse the name at once (it did get 400 when the
    listing ran ahead of job.json); so an ending shows only after it is written."""
    writing, release = threading.Event(), threading.Event()
    real_write = jobs.store.write_json_atomic

    def slow_write(path: Path, values: dict) -> None:
        if values.get("state") == "cancelled":
            writing.set()
            release.wait(30)
        real_write(path, values)

    monkeypatch.setattr(jobs.store, "write_json_atomic", slow_write)
    worker.submit("running", "whisperseg-tiny", examples, config=FAST)
    assert gate.paused.wait(60)
    worker.cancel("running")
    gate.release.set()
    assert writing.wait(30)
    shown_while_writing = worker.job("running").state
    release.set()
    assert shown_while_writing == "training"
    assert wait_until_finished(worker, "running").state == "cancelled"
    worker.submit("running", "whisperseg-tiny", examples, config=FAST)  # free once shown so
    assert wait_until_finished(worker, "running").state == "done"


def test_a_restart_marks_unfinished_jobs_failed(registry, examples):
    for name, state in (("was-queued", "queued"), ("was-training", "training"), ("ok", "done")):
        folder = registry.models_dir / name
        folder.mkdir()
        (folder / JOB_FILE).write_text(json.dumps({"state": state, "initial_model": "x"}))
    worker = FinetuneWorker(registry)
    try:
        states = {r.name: (r.state, r.error) for r in worker.jobs()}
        assert states == {
            "was-queued": ("failed", INTERRUPTED),
            "was-training": ("failed", INTERRUPTED),
            "ok": ("done", None),
        }
        on_disk = json.loads((registry.models_dir / "was-training" / JOB_FILE).read_text())
        assert (on_disk["state"], on_disk["error"]) == ("failed", INTERRUPTED)
        assert [m.name for m in registry.list_ready()] == ["whisperseg-tiny", ENERGY_MODEL]
    finally:
        worker.close()


@pytest.mark.slow
def test_listing_jobs_does_not_wait_for_a_slow_disk(worker, examples, monkeypatch):
    """job.json is written outside the job lock: a slow disk never stalls the model lists."""
    writing, release = threading.Event(), threading.Event()
    real_write = jobs.store.write_json_atomic

    def slow_write(path: Path, values: dict) -> None:
        if values.get("state") == "training":
            writing.set()
            release.wait(30)
        real_write(path, values)

    monkeypatch.setattr(jobs.store, "write_json_atomic", slow_write)
    worker.submit("slow-disk", "whisperseg-tiny", examples, config=FAST)
    assert writing.wait(30)
    listed: list[list[JobRecord]] = []
    reader = threading.Thread(target=lambda: listed.append(worker.jobs()))
    reader.start()
    reader.join(5)
    still_writing = not release.is_set()
    release.set()
    assert listed and still_writing, "listing jobs waited for the disk write"
    assert [j.name for j in listed[0]] == ["slow-disk"]
    assert wait_until_finished(worker, "slow-disk").state == "done"
