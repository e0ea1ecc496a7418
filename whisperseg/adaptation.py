"""Teach a model a new species from seconds of labels, and say honestly how well it did.

``adapt`` holds back the last fifth of each recording's labels (with the annotated time
after them), finetunes a copy of the base model on the rest, scores the base model, the
finetuned one and the energy-threshold baseline on the held-back labels, then goes on
training the same model on all labels (a warm start: the validation figures describe the
model before it saw the held-back part). When the finetuned copy did worse than its base
on voice activity, by more than the noise of a few held-back calls, and the labels name no
call types, the base model is kept instead: a job never presents a worse model as new;
with too few held-back labels to judge, a base that already finds all the labels is kept
too. Both trainings draw half their crops from scenes composed of the labelled areas
(``whisperseg.scenes``), so a few labelled calls teach whole windows of their recording.
Progress covers both trainings and the scoring, so an ETA computed from it is honest.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from whisperseg.energy import EnergyParams, energy_segments
from whisperseg.holdout import LabelStats, label_stats, split_examples
from whisperseg.metrics import Counts, segment_counts
from whisperseg.model import WhisperSegModel
from whisperseg.scenes import with_scenes
from whisperseg.segment import Segment, split_cluster
from whisperseg.segmentation import SegmentationConfig, segment_recording
from whisperseg.training import TrainingConfig, TrainingExample, TrainingProgress, finetune
from whisperseg.view import View, as_viewed, choose_view, known_views

# A window decoded at inference costs about this share of one training step (batch 4).
STEPS_PER_WINDOW = 0.15
# Fewer held-back labels than this cannot tell two models apart: no verdict is given.
MIN_HELD_OUT_SEGMENTS = 5
# "better" needs this much more F1 than the base (one of 20 held-back calls), and at least
# FLOOR_F1: a model that misses most held-back calls is not better, whatever its base did.
MARGIN_F1 = 0.05
FLOOR_F1 = 0.5
# With too few held-back labels to judge, a base that already finds this share of all the
# labels (none of which it saw) is kept: finetuning on a handful of calls it gets right can
# only cost it (bench/corpus_story.py: five calls took a recording from 0.979 to 0.933).
BASE_KNOWS_F1 = 0.9


@dataclass(frozen=True)
class AdaptationConfig:
    """How a job trains and validates; the defaults fit 45 s of labels in 5 CPU minutes."""

    training: TrainingConfig = TrainingConfig(
        max_steps=100, learning_rate=1e-4, warmup_steps=10, batch_size=4
    )
    final_steps: int = 50
    holdout_fraction: float = 0.2
    num_trials: int = 3
    tolerance: float | None = None
    post_process: bool = True
    views: tuple[tuple[int, int], ...] | None = None
    # Share of training crops drawn from scenes composed of the labelled areas; 0: none.
    scene_share: float = 0.5


Verdict = Literal["better", "not better"]
Kept = Literal["finetuned", "base"]


@dataclass(frozen=True)
class Validation:
    """Figures on the labels a job held back from training, kept in the job record and
    the model card.

    Segment F1 ignores cluster names (voice activity) and is always given; with several
    cluster names, ``finetuned_typed_f1`` and ``base_typed_f1`` also ask the names to
    match (species and individual left out: naming an individual per recording does not
    make calls types). ``verdict`` compares the finetuned model with its base: on untyped
    F1, or with call types on typed F1 (the types are what the person asked for; a base
    that writes none scores 0) while finding the calls about as well as the base. It is
    None (``note`` says why) with too few held-back labels to judge; the energy
    threshold is compared in ``beats_energy``. ``kept`` says which model the job's
    folder holds.
    """

    base_segment_f1: float
    finetuned_segment_f1: float
    energy_segment_f1: float
    tolerance: float  # seconds an onset or offset may be off
    typed: bool  # whether the labels name several call types
    held_out_seconds: float
    held_out_segments: int
    verdict: Verdict | None
    held_out_recordings: int = 1
    finetuned_typed_f1: float | None = None
    base_typed_f1: float | None = None
    beats_energy: bool | None = None
    kept: Kept = "finetuned"
    note: str = ""

    @classmethod
    def from_dict(cls, values: dict) -> Validation:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class AdaptationResult:
    """``validation``: F1s on the held-back labels and the verdict; ``segmentation``: the
    settings to save the finetuned model with (its first ``default_segmentation_config``)."""

    validation: Validation
    segmentation: dict | None  # None when the base model was kept: it reads each recording
    losses: list[float] = field(default_factory=list)


def default_tolerance(median_duration: float) -> float:
    """A tenth of the median call, at least 10 ms, at most half a call.

    Human boundaries wander in proportion to the call: the shared data sets (medians
    24-113 ms) are scored at 10 ms, a mammal data set of 90-250 ms calls at 20 ms; a
    tenth of the median gives 10 ms and 15-25 ms for them.
    """
    return min(max(0.01, 0.1 * median_duration), 0.5 * median_duration)


def segmentation_settings(
    view: View, stats: LabelStats, min_frequency: float, num_trials: int, post_process: bool
) -> SegmentationConfig:
    """Segmentation through ``view``; fragments shorter or closer than half of anything the
    person labelled are tidied away.

    A gap is only trusted when the model can write it: one time token spans two
    columns, and gaps finer than that (Bengalese finch syllables 1 ms apart) would join
    neighbouring syllables.
    """
    half_gap = 0.5 * stats.min_gap if post_process else 0.0
    return view.segmentation(
        min_frequency=min_frequency,
        min_segment_length=0.5 * stats.min_duration if post_process else 0.0,
        min_gap=half_gap if half_gap > 2 * view.spec_time_step else 0.0,
        eps=max(0.002, min(0.02, 0.25 * stats.median_duration)),
        num_trials=num_trials,
    )


class _Work:
    """Progress of the whole job in training-step units, reported as TrainingProgress."""

    def __init__(self, total: float, report: Callable[[TrainingProgress], None] | None):
        self.total, self.done, self.report = total, 0.0, report
        self.loss = math.nan
        self.started = time.monotonic()

    def advance(self, units: float, loss: float | None = None) -> None:
        self.done = min(self.total, self.done + units)
        self.loss = self.loss if loss is None else loss
        if self.report:
            elapsed = time.monotonic() - self.started
            self.report(TrainingProgress(round(self.done), round(self.total), self.loss, elapsed))

    def part(self, units: float) -> Callable[[float], None]:
        """A callback taking the fraction done of a task worth ``units``."""
        reached = [0.0]

        def report(fraction: float) -> None:
            self.advance(units * fraction - reached[0])
            reached[0] = units * fraction

        return report


def _windows(examples: Sequence[TrainingExample], config: SegmentationConfig, columns: int) -> int:
    """Windows segment_recording decodes for ``examples`` (all trials)."""
    window_seconds = config.spec_time_step * columns
    per_trial = sum(math.ceil(e.duration / window_seconds) + 1 for e in examples)
    return per_trial * max(1, config.num_trials)


def _segment_all(
    model: WhisperSegModel,
    examples: Sequence[TrainingExample],
    config: SegmentationConfig,
    work: _Work,
    units: float,
) -> list[list[Segment]]:
    """Each example segmented, reporting progress in proportion to its length."""
    total = sum(e.duration for e in examples) or 1.0
    return [
        segment_recording(
            model, e.audio, e.sr, config, progress=work.part(units * e.duration / total)
        )
        for e in examples
    ]


def _call_types(segments: Sequence[Segment]) -> list[Segment]:
    """The segments named by cluster name alone (species and individual dropped)."""
    return [replace(s, cluster=split_cluster(s.cluster)[2]) for s in segments]


def _f1(predictions, examples: Sequence[TrainingExample], tolerance: float, typed: bool) -> float:
    counts = Counts()
    for predicted, example in zip(predictions, examples, strict=True):
        truth = _call_types(example.segments) if typed else example.segments
        found = _call_types(predicted) if typed else predicted
        counts += segment_counts(found, truth, tolerance, match_cluster=typed)
    return counts.f1


def _energy(examples: Sequence[TrainingExample], min_frequency: float, cluster: str) -> list:
    params = EnergyParams.with_floor(min_frequency)
    return [energy_segments(e.audio, e.sr, params, cluster) for e in examples]


@dataclass(frozen=True)
class _Plan:
    """What a job decided from the labels before training."""

    view: View
    segmentation: SegmentationConfig
    tolerance: float
    typed: bool
    energy_cluster: str


def _plan(
    model: WhisperSegModel, examples: Sequence[TrainingExample], config: AdaptationConfig
) -> _Plan:
    stats = label_stats(examples)
    views = config.views or known_views(model.default_segmentation_config)
    view = choose_view(examples[0].sr, [stats.median_duration], views)
    min_frequency = examples[0].min_frequency
    return _Plan(
        view=view,
        segmentation=segmentation_settings(
            view, stats, min_frequency, config.num_trials, config.post_process
        ),
        tolerance=config.tolerance or default_tolerance(stats.median_duration),
        typed=len({split_cluster(c)[2] for c in stats.clusters}) > 1,
        energy_cluster=stats.clusters[0],
    )


def _validate(
    base_found: list[list[Segment]],
    trained: WhisperSegModel,
    held: Sequence[TrainingExample],
    plan: _Plan,
    work: _Work,
    units: float,
) -> Validation:
    """Segment F1 of the base (its segments ``base_found``), the finetuned model and the
    energy baseline on ``held``."""
    seg, tol = plan.segmentation, plan.tolerance
    tuned_found = _segment_all(trained, held, seg, work, units)
    energy = _energy(held, seg.min_frequency, plan.energy_cluster)
    base_f1, tuned_f1 = _f1(base_found, held, tol, False), _f1(tuned_found, held, tol, False)
    energy_f1 = _f1(energy, held, tol, False)
    tuned_typed = _f1(tuned_found, held, tol, True) if plan.typed else None
    base_typed = _f1(base_found, held, tol, True) if plan.typed else None
    held_segments = _held_segments(held)
    judged = held_segments >= MIN_HELD_OUT_SEGMENTS
    note = (
        ""
        if judged
        else f"{held_segments} held-back labels are too few to judge (at least "
        f"{MIN_HELD_OUT_SEGMENTS} are needed): label more calls to get a verdict"
    )
    return Validation(
        base_segment_f1=base_f1,
        finetuned_segment_f1=tuned_f1,
        energy_segment_f1=energy_f1,
        tolerance=tol,
        typed=plan.typed,
        held_out_seconds=sum(e.duration for e in held),
        held_out_segments=held_segments,
        verdict=_verdict(base_f1, tuned_f1, base_typed, tuned_typed) if judged else None,
        held_out_recordings=len({e.source for e in held if e.segments}),
        finetuned_typed_f1=tuned_typed,
        base_typed_f1=base_typed,
        beats_energy=tuned_f1 > energy_f1,
        note=note,
    )


def _held_segments(held: Sequence[TrainingExample]) -> int:
    return sum(len(e.segments) for e in held)


def _verdict(
    base_f1: float, tuned_f1: float, base_typed: float | None, tuned_typed: float | None
) -> Verdict:
    if base_typed is None or tuned_typed is None:
        better = tuned_f1 >= max(base_f1 + MARGIN_F1, FLOOR_F1)
    else:
        better = (
            tuned_typed >= max(base_typed + MARGIN_F1, FLOOR_F1) and tuned_f1 >= base_f1 - MARGIN_F1
        )
    return "better" if better else "not better"


def _keeps_base(validation: Validation) -> bool:
    """The base model is kept when it found the held-back calls better by ``MARGIN_F1`` and
    the labels name no call types (which only the finetuned model can write).

    A smaller lead is within the noise of a few held-back calls: the same mouse job on 15
    of them scored its finetuned copy 0.786 in one process and 0.897 in another (float
    rounding on two threads), against the base's 0.800, and that copy then beat the base
    by 0.19-0.22 on the recordings' unlabelled audio (bench/corpus_story.py).
    """
    return _base_lead(validation) >= MARGIN_F1


def _base_ahead_within_noise(validation: Validation) -> bool:
    return 0.0 < _base_lead(validation) < MARGIN_F1


def _base_lead(validation: Validation) -> float:
    """How much better the base found the held-back calls, where that could keep it: a
    "not better" verdict on labels without call types (0 otherwise)."""
    if validation.verdict != "not better" or validation.typed:
        return 0.0
    return validation.base_segment_f1 - validation.finetuned_segment_f1


def _close_call(validation: Validation) -> str:
    """Why a finetuned model that scored below its base is still the one kept."""
    return (
        f"the base model found the held-back calls slightly better (segment F1 "
        f"{validation.base_segment_f1:.3f} against {validation.finetuned_segment_f1:.3f}), "
        f"by less than {MARGIN_F1}: within the noise of {validation.held_out_segments} "
        "calls, so the finetuned model, which learned your labels, is kept"
    )


def adapt(
    base: WhisperSegModel | str | Path,
    examples: Sequence[TrainingExample],
    config: AdaptationConfig = AdaptationConfig(),
    progress: Callable[[TrainingProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[WhisperSegModel, AdaptationResult]:
    """Validate finetuning on held-back labels, then finetune on all; (model, result).

    ``examples`` are labelled clips in annotation order, possibly from several
    recordings at one rate; their ``spec_time_step`` is ignored (the view is chosen
    from the labels and the base model's known time steps). ``base`` is not changed.
    Raises ``TrainingCancelled`` when ``should_stop`` says so, ``ValueError`` when no
    label lies before the held-back part.
    """
    base = WhisperSegModel.load(base) if isinstance(base, str | Path) else base
    plan = _plan(base, examples, config)
    kept, held = split_examples(examples, config.holdout_fraction)
    if not any(e.segments for e in kept):
        raise ValueError("every label is in the last part of the annotated time: label earlier")
    columns = base.total_spec_columns
    scoring = STEPS_PER_WINDOW * _windows(held, plan.segmentation, columns)
    check_base = not plan.typed and _held_segments(held) < MIN_HELD_OUT_SEGMENTS
    checking = STEPS_PER_WINDOW * _windows(kept, plan.segmentation, columns) if check_base else 0.0
    work = _Work(config.training.max_steps + config.final_steps + 2 * scoring + checking, progress)

    trained = copy.deepcopy(base)
    window = plan.view.spec_time_step * columns
    share = config.scene_share
    losses = _train(trained, kept, plan.view, window, share, config.training, work, should_stop)
    base_held = _segment_all(base, held, plan.segmentation, work, scoring)
    validation = _validate(base_held, trained, held, plan, work, scoring)
    note = None
    if _keeps_base(validation):
        note = "the base model found the held-back calls better: it is kept unchanged"
    elif _base_ahead_within_noise(validation):
        validation = replace(validation, note=_close_call(validation))
    elif check_base:  # every label: the held-back ones are segmented already
        base_kept = _segment_all(base, kept, plan.segmentation, work, checking)
        known = _f1(base_kept + base_held, [*kept, *held], plan.tolerance, False)
        if known >= BASE_KNOWS_F1:
            note = (
                f"{validation.note}; the base model already finds your labels (segment F1 "
                f"{known:.3f} on all of them): it is kept unchanged"
            )
    if note is not None:
        work.advance(work.total)
        validation = replace(validation, kept="base", note=note)
        return base, AdaptationResult(validation, None, losses)
    final = replace(
        config.training,
        max_steps=config.final_steps,
        warmup_steps=min(config.training.warmup_steps, config.final_steps),
        seed=config.training.seed + 1,
    )
    if config.final_steps:
        losses += _train(trained, examples, plan.view, window, share, final, work, should_stop)
    settings = asdict(plan.segmentation)
    settings = {k: v for k, v in settings.items() if v is not None and k != "batch_size"}
    return trained, AdaptationResult(validation, settings, losses)


def _train(
    model: WhisperSegModel,
    examples: Sequence[TrainingExample],
    view: View,
    window_seconds: float,
    scene_share: float,
    training: TrainingConfig,
    work: _Work,
    should_stop: Callable[[], bool] | None,
) -> list[float]:
    composed = with_scenes(examples, window_seconds, scene_share, training.seed)
    viewed = [as_viewed(e, view) for e in composed]
    return finetune(model, viewed, training, lambda p: work.advance(1.0, p.loss), should_stop)
