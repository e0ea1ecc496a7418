"""One finetuning job's work, the same in the server's thread and on a Celery worker.

The job folder is created whole (``JobStore.create``) when the job is queued. The
trained weights are saved to another staging folder together with the final
``job.json`` (state ``done``) and the model card, and that folder is renamed into place, so a
model never looks ready half-written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from jobs.record import JobRecord, JobState
from jobs.store import JobStore
from model_registry import ModelRegistry
from whisperseg import ct2
from whisperseg.adaptation import AdaptationConfig, AdaptationResult, adapt
from whisperseg.durable import utc_timestamp
from whisperseg.model import WhisperSegModel, make_ct2_copy, pick_device
from whisperseg.segmenters import FINETUNED_CONFIG_KEY
from whisperseg.training import TrainingCancelled, TrainingExample, TrainingProgress

log = logging.getLogger(__name__)

# A job validates on held-back labels, then trains on all of them (whisperseg.adaptation);
# its defaults fit 45 s of labels in 5 minutes of a 2-core CPU.
FINETUNE_DEFAULTS = AdaptationConfig()


def finetune_config(total_steps: int, tolerance: float | None = None) -> AdaptationConfig:
    """The default job with ``total_steps`` training steps: two thirds before validation,
    one third after it on all labels; ``tolerance`` (seconds) scores the validation
    (default: from the labels' lengths)."""
    final = total_steps // 3
    training = dataclasses.replace(FINETUNE_DEFAULTS.training, max_steps=total_steps - final)
    return dataclasses.replace(
        FINETUNE_DEFAULTS, training=training, final_steps=final, tolerance=tolerance
    )


Examples = Callable[[], Sequence[TrainingExample]]
StopOutcome = Callable[[], tuple[JobState, str | None]]


def run_job(
    store: JobStore,
    registry: ModelRegistry,
    record: JobRecord,
    examples: Examples,
    config: AdaptationConfig,
    device: str | None,
    should_stop: Callable[[], bool],
    stopped: StopOutcome = lambda: ("cancelled", None),
) -> JobRecord:
    """Train a started job, stage its model and put it in place; the record it ended with.

    The one sequence of both job backends. ``examples`` are read inside the job, so a
    clip that cannot be read fails it; ``stopped`` says how a job that stopped when
    asked ends (cancelled, or failed when its server closed). Only errors of the
    bookkeeping itself escape. The ended record is a new one, written before it is
    returned: whoever shows ``record`` never shows an end that is not on disk yet (a
    cancelled name is free for a new job as soon as it is listed cancelled).
    """
    try:
        model, result = train_job(
            registry, record, examples(), config, device, _reporter(store, record), should_stop
        )
        staging, done = stage_model(store, record, model, result, device)
        store.install(staging, record.name)
        return done
    except TrainingCancelled:
        state, error = stopped()
    except Exception as exc:
        log.exception("finetuning %r failed", record.name)
        state, error = "failed", str(exc) or type(exc).__name__
    ended = dataclasses.replace(record)
    ended.finish(state, error)
    store.save(ended)
    return ended


def _reporter(store: JobStore, record: JobRecord) -> Callable[[TrainingProgress], None]:
    def report(progress: TrainingProgress) -> None:
        record.report(progress)
        store.save_progress(record)

    return report


def train_job(
    registry: ModelRegistry,
    record: JobRecord,
    examples: Sequence[TrainingExample],
    config: AdaptationConfig,
    device: str | None,
    progress: Callable[[TrainingProgress], None],
    should_stop: Callable[[], bool],
) -> tuple[WhisperSegModel, AdaptationResult]:
    """Finetune a copy of the job's initial model (the cached inference copy is untouched);
    raises TrainingCancelled when ``should_stop`` says so, even after the last step."""
    base = WhisperSegModel.load(registry.whisperseg_folder(record.initial_model), device=device)
    model, result = adapt(base, examples, config, progress=progress, should_stop=should_stop)
    if should_stop():
        raise TrainingCancelled("finetuning cancelled")
    return model, result


def stage_model(
    store: JobStore,
    record: JobRecord,
    model: WhisperSegModel,
    result: AdaptationResult,
    device: str | None,
) -> tuple[Path, JobRecord]:
    """(hidden folder holding weights, card and the ``done`` record, that record); the
    caller installs the folder as ``models/<name>``."""
    if result.segmentation is not None:  # a kept base model reads each recording instead
        others = model.default_segmentation_config
        model.default_segmentation_config = {
            FINETUNED_CONFIG_KEY: result.segmentation,
            **{k: v for k, v in others.items() if k != FINETUNED_CONFIG_KEY},
        }
    staging = store.staging_folder(record.name)
    try:
        model.save(staging)
        if ct2.available() and pick_device(device).type == "cuda":
            make_ct2_copy(staging)  # GPU inference decodes with it from the first request
        done = dataclasses.replace(
            record,
            state="done",
            progress=1.0,
            eta_s=0.0,
            finished=utc_timestamp(),
            validation=result.validation,
        )
        (staging / "README.md").write_text(model_card(done, result))
        store.save(done, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, done


def model_card(job: JobRecord, result: AdaptationResult) -> str:
    """The finetuned model's README: what it learned from and how well, measured."""
    v = result.validation
    request = job.request
    typed = (
        [
            f"| `{job.initial_model}`, cluster names must match | {v.base_typed_f1 or 0.0:.3f} |",
            f"| finetuned, cluster names must match | {v.finetuned_typed_f1:.3f} |",
        ]
        if v.finetuned_typed_f1 is not None
        else []
    )
    verdict = {
        "better": "**better** than its base on the held-back calls.",
        "not better": "**not better** than its base on the held-back calls: label more, or "
        "keep the base model.",
        None: "none.",
    }[v.verdict]
    kept = (
        f"This folder holds `{job.initial_model}` unchanged: {v.note}."
        if v.kept == "base"
        else (v.note + "." if v.note else "")
    )
    settings = (
        ["```json", json.dumps(result.segmentation, indent=2), "```"]
        if result.segmentation is not None
        else ["Read off each recording, as for any model not finetuned."]
    )
    lines = [
        f"# {job.name}",
        "",
        f"Finetuned from `{job.initial_model}` on {request.get('num_human_labels', '?')} human "
        f"labels of {len(request.get('audio_ids', []))} recording(s), {job.finished}.",
        "",
        "## Validation on held-back labels",
        "",
        f"Before the final training on all labels, a copy trained without the last fifth of "
        f"the labels of each recording ({v.held_out_segments} labels, {v.held_out_seconds:.1f} s "
        f"of {v.held_out_recordings} recording(s)) was scored on them: segment F1 at "
        f"{v.tolerance * 1000:.0f} ms.",
        "",
        "| segmenter | segment F1 |",
        "| --- | --- |",
        f"| `{job.initial_model}`, not finetuned | {v.base_segment_f1:.3f} |",
        f"| `energy-threshold` | {v.energy_segment_f1:.3f} |",
        f"| finetuned | {v.finetuned_segment_f1:.3f} |",
        *typed,
        "",
        f"Verdict: {verdict} {kept}".rstrip(),
        "",
        "## Segmentation settings",
        "",
        *settings,
        "",
    ]
    return "\n".join(lines)
