"""One finetuning job's work, the same in the server's thread and on a Celery worker.

The job folder is created whole (a staging folder renamed into place) when the job is
queued. The trained weights are saved to another staging folder together with the final
``job.json`` (state ``done``) and the model card, and the caller renames that folder into
place, so a model never looks ready half-written.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from jobs.record import JobRecord
from model_registry import FINETUNED_CONFIG_KEY, JOB_FILE, ModelRegistry
from server.durable import utc_timestamp, write_json_atomic
from whisperseg import ct2
from whisperseg.adaptation import AdaptationConfig, AdaptationResult, adapt
from whisperseg.folder_swap import replace_folder
from whisperseg.model import WhisperSegModel, make_ct2_copy, pick_device
from whisperseg.training import TrainingCancelled, TrainingExample, TrainingProgress

# A job validates on held-back labels, then trains on all of them (whisperseg.adaptation);
# its defaults fit 45 s of labels in 5 minutes of a 2-core CPU.
FINETUNE_DEFAULTS = AdaptationConfig()


def finetune_config(total_steps: int) -> AdaptationConfig:
    """The default job with ``total_steps`` training steps: two thirds before validation,
    one third after it on all labels."""
    final = total_steps // 3
    training = dataclasses.replace(FINETUNE_DEFAULTS.training, max_steps=total_steps - final)
    return dataclasses.replace(FINETUNE_DEFAULTS, training=training, final_steps=final)


def create_job_folder(models_dir: Path, record: JobRecord) -> None:
    """``models/<name>/job.json`` in one rename: the folder never exists without its record."""
    staging = models_dir / f".{record.name}.{uuid.uuid4().hex}.new"
    staging.mkdir()
    write_json_atomic(staging / JOB_FILE, asdict(record))
    replace_folder(staging, models_dir / record.name)


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
    models_dir: Path,
    record: JobRecord,
    model: WhisperSegModel,
    result: AdaptationResult,
    device: str | None,
) -> tuple[Path, JobRecord]:
    """(hidden folder holding weights, card and the ``done`` record, that record); the
    caller renames the folder to ``models/<name>`` and removes it if that fails."""
    others = model.default_segmentation_config
    model.default_segmentation_config = {
        FINETUNED_CONFIG_KEY: result.segmentation,
        **{k: v for k, v in others.items() if k != FINETUNED_CONFIG_KEY},
    }
    staging = models_dir / f".{record.name}.{uuid.uuid4().hex}.done"
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
        write_json_atomic(staging / JOB_FILE, asdict(done))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, done


def install(staging: Path, folder: Path) -> None:
    """Rename a staged model folder to ``folder``; the staging folder is gone either way."""
    try:
        replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def model_card(job: JobRecord, result: AdaptationResult) -> str:
    """The finetuned model's README: what it learned from and how well, measured."""
    v = result.validation
    request = job.request
    lines = [
        f"# {job.name}",
        "",
        f"Finetuned from `{job.initial_model}` on {request.get('num_human_labels', '?')} human "
        f"labels of {len(request.get('audio_ids', []))} recording(s), {job.finished}.",
        "",
        "## Validation on held-back labels",
        "",
        f"Before the final training on all labels, a copy trained without the last "
        f"{v['held_out_seconds']:.1f} s of annotated time ({v['held_out_segments']} labels) was "
        f"scored on them: segment F1 at {v['tolerance'] * 1000:.0f} ms"
        f"{', cluster names must match' if v.get('typed') else ''}.",
        "",
        "| segmenter | segment F1 |",
        "| --- | --- |",
        f"| `{job.initial_model}`, not finetuned | {v['base_segment_f1']:.3f} |",
        f"| `energy-threshold` | {v['energy_segment_f1']:.3f} |",
        f"| finetuned | {v['finetuned_segment_f1']:.3f} |",
        "",
        f"Verdict: **{v['verdict']}**"
        + (
            "."
            if v["verdict"] == "better"
            else " than the base model or the energy threshold: label more, or use those."
        ),
        "",
        "## Segmentation settings",
        "",
        "```json",
        json.dumps(result.segmentation, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)
