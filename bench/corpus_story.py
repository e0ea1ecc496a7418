"""A few labels for a whole corpus: what to label, and what the job then does everywhere.

Each story is a corpus of recordings of one species the base model never heard (or, with
``--base``, a base named on the command line), a label budget in seconds, and three ways
of choosing what the person labels:

- ``first``: the first seconds of the first recording (on into the next when it is short);
- ``random``: random areas over all recordings (the suggestions' area length);
- ``suggested``: ``whisperseg.suggest`` on the base model's predictions, then a second
  round of the loop: suggestions from the finetuned model, labelled, one more job on all
  labels.

For each it runs the default job (``whisperseg.adaptation.adapt``) and prints segment F1
on all unlabelled audio and on the recordings no label came from, for energy-threshold,
the untuned base (as served, ``served_config``) and the finetuned model, all in one run,
and how well the finetuned model's ``confidence`` tells its right segments from its wrong
ones there (ROC AUC, precision of the segments at >= 0.9 and of all, and the mean
confidence that a calibrated model would make equal to the latter; issue 21's goal: AUC
>= 0.80, precision >= 0.95 at >= 0.9). ``--few-shot`` adds the few-shot protocol: the
first 5 calls of each recording labelled, one job per recording, its rest scored.

    python bench/corpus_story.py [--stories generated mouse bengalese juveniles]
        [--few-shot] [--base DIR] [--freeze-encoder] [--steps N] [--self-train CONFIDENCE]
        [--scene-share SHARE]

Bases: the shipped model for the generated corpus; the shipped recipe without the
species for mouse and Bengalese finch (``bench/recipe_variants.py``: trained once into
bench/.cache/, which needs the first recipe's model in work_dirs/); juvenile zebra finch
needs ``--base`` (a base without zebra finch is a recipe of its own).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.confidence import scores as confidence_scores  # noqa: E402
from bench.new_species import SHIPPED, joined_files, mammal_like  # noqa: E402
from bench.recipe_variants import leave_out  # noqa: E402
from bench.self_training import confident_clips  # noqa: E402
from whisperseg.adaptation import AdaptationConfig, AdaptationResult, adapt  # noqa: E402
from whisperseg.datasets import find_recordings, shared_data_dir  # noqa: E402
from whisperseg.holdout import slice_example  # noqa: E402
from whisperseg.metrics import Counts, matched_predictions, segment_counts  # noqa: E402
from whisperseg.model import WhisperSegModel  # noqa: E402
from whisperseg.segment import Segment  # noqa: E402
from whisperseg.segmentation import SegmentationConfig, segment_recording  # noqa: E402
from whisperseg.segmenters import EnergySegmenter, WhisperSegSegmenter, served_config  # noqa: E402
from whisperseg.suggest import RecordingPredictions, default_area_seconds, suggest_areas  # noqa: E402
from whisperseg.training import TrainingExample  # noqa: E402

Interval = tuple[float, float]
Areas = dict[int, list[Interval]]  # recording index -> labelled areas
FEW_SHOT_CALLS = 5


@dataclass(frozen=True)
class Recording:
    name: str
    audio: np.ndarray
    sr: int
    truth: tuple[Segment, ...]

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sr


@dataclass(frozen=True)
class Story:
    name: str
    recordings: tuple[Recording, ...]
    budget: float  # seconds of labels
    tolerance: float
    min_frequency: float
    base: Path | None  # None: the base must be given with --base

    @property
    def typed(self) -> bool:
        return len({s.cluster for r in self.recordings for s in r.truth}) > 1


def _joined(paths: Sequence[Path], name: str) -> Recording:
    """Files of one recording session (or one bird) end to end, labels shifted to match."""
    audio, sr, truth = joined_files(list(paths))
    return Recording(name, audio, sr, tuple(truth))


def generated() -> Story:
    """Four "individuals" of one made-up mammal: call lengths and noise differ."""
    kinds = [((0.1, 0.5), 1.0), ((0.05, 0.15), 0.5), ((0.3, 0.8), 2.0), ((0.1, 0.3), 3.0)]
    recordings = []
    for index, (lengths, noise) in enumerate(kinds):
        audio, sr, truth = mammal_like(10 + index, 30.0, 16000, lengths, noise)
        recordings.append(Recording(f"individual{index + 1}", audio, sr, tuple(truth)))
    return Story("generated mammal, 4 individuals", tuple(recordings), 16.0, 0.02, 0.0, SHIPPED)


def stories(names: Sequence[str]) -> list[Story]:
    data = shared_data_dir()
    found = []
    for name in names:
        if name == "generated":
            found.append(generated())
        elif data is None:
            print(f"{name}: ../shared/data not found, skipped")
        elif name == "mouse":
            recordings = tuple(_joined([p], p.stem) for p in find_recordings(data / "mouse"))
            found.append(Story("mouse USV, 7 recordings", recordings, 10.0, 0.01, 35000.0, None))
        elif name == "bengalese":
            paths = find_recordings(data / "bengalese_finch")[:24]
            recordings = tuple(_joined(paths[i : i + 6], f"files{i}") for i in range(0, 24, 6))
            found.append(Story("Bengalese finch types", recordings, 30.0, 0.01, 0.0, None))
        elif name == "juveniles":
            birds: dict[str, list[Path]] = {}
            for path in find_recordings(data / "zebra_finch" / "juveniles"):
                birds.setdefault(path.stem.split("_")[2], []).append(path)
            recordings = tuple(_joined(paths, bird) for bird, paths in sorted(birds.items()))
            found.append(Story("juvenile zebra finch, 4 birds", recordings, 16.0, 0.01, 0.0, None))
    return found


def default_base(story: Story) -> Path | None:
    """The base that never heard the story's species, where one can be trained here."""
    if story.base is not None:
        return story.base
    if story.name.startswith("mouse"):
        return leave_out("mouse")
    if story.name.startswith("Bengalese"):
        return leave_out("bengalese_finch")
    return None


def examples_for(story: Story, areas: Areas) -> list[TrainingExample]:
    """One labelled clip per area, in recording and time order."""
    examples = []
    for index, intervals in sorted(areas.items()):
        whole = _whole(story, story.recordings[index])
        examples += [slice_example(whole, start, end) for start, end in sorted(intervals)]
    return examples


def _whole(story: Story, r: Recording) -> TrainingExample:
    """All of a recording with all its calls, to cut labelled areas from."""
    return TrainingExample(r.audio, r.sr, r.truth, 0.0, story.min_frequency, source=r.name)


def first_seconds(story: Story) -> Areas:
    areas, left = {}, story.budget
    for index, r in enumerate(story.recordings):
        if left <= 0:
            break
        areas[index] = [(0.0, min(left, r.duration))]
        left -= r.duration
    return areas


def random_areas(story: Story, area_seconds: float, seed: int = 0) -> Areas:
    """Non-overlapping areas of ``area_seconds`` at random places, recordings drawn by
    length, until the budget is spent."""
    rng = np.random.default_rng(seed)
    lengths = np.array([r.duration for r in story.recordings])
    areas: Areas = {}
    left, tries = story.budget, 0
    while left > 0.05 and tries < 1000:
        tries += 1
        index = int(rng.choice(len(lengths), p=lengths / lengths.sum()))
        size = min(area_seconds, left, lengths[index])
        start = float(rng.uniform(0, lengths[index] - size))
        taken = areas.get(index, [])
        if any(start < b and start + size > a for a, b in taken):
            continue
        areas[index] = [*taken, (start, start + size)]
        left -= size
    return areas


def suggested(
    story: Story, predictions: Sequence[Sequence[Segment]], baseline, areas: Areas
) -> Areas:
    """The suggestions for one more budget of labels, outside ``areas``; ``areas`` joined."""
    recordings = [
        RecordingPredictions(str(i), r.duration, predictions[i], baseline[i], areas.get(i, ()))
        for i, r in enumerate(story.recordings)
    ]
    joined = {i: list(v) for i, v in areas.items()}
    for area in suggest_areas(recordings, story.budget):
        joined.setdefault(int(area.audio_id), []).append((area.onset, area.offset))
    return joined


def _outside(segments: Sequence[Segment], intervals: Sequence[Interval]) -> list[Segment]:
    return [s for s in segments if not any(s.offset > a and s.onset < b for a, b in intervals)]


def scores(
    story: Story, predictions: Sequence[Sequence[Segment]], areas: Areas
) -> tuple[float, float]:
    """Segment F1 (untyped unless the story has types) on all unlabelled audio, and on the
    recordings no label came from (nan when every recording gave labels)."""
    everywhere, unlabelled = Counts(), Counts()
    for index, (r, found) in enumerate(zip(story.recordings, predictions, strict=True)):
        labelled = areas.get(index, [])
        counts = segment_counts(
            _outside(found, labelled), _outside(r.truth, labelled), story.tolerance, story.typed
        )
        everywhere += counts
        if not labelled:
            unlabelled += counts
    all_labelled = all(areas.get(i) for i in range(len(story.recordings)))
    return everywhere.f1, float("nan") if all_labelled else unlabelled.f1


class ConfidenceTally:
    """Each predicted segment's confidence and whether it matched a true one at the story's
    tolerance, pooled."""

    def __init__(self, story: Story) -> None:
        self.story = story
        self.confidence: list[float] = []
        self.right: list[bool] = []

    def add(self, found: Sequence[Segment], truth: Sequence[Segment]) -> None:
        self.confidence.extend(s.confidence for s in found)
        tolerance, typed = self.story.tolerance, self.story.typed
        self.right.extend(matched_predictions(found, truth, tolerance, typed))

    def summary(self) -> str:
        """AUC of confidence for a right segment, precision at >= 0.9 and of all segments
        beside their mean confidence (what a calibrated model expects it to be)."""
        right = np.array(self.right, dtype=bool)
        if not len(right):
            return "confidence: no segments"
        auc, sure, count = confidence_scores(np.array(self.confidence), right)
        return (
            f"confidence AUC {auc}, precision >= 0.9 {sure} ({count} segments), "
            f"all {right.mean():.3f} ({len(right)}, mean confidence {np.mean(self.confidence):.3f})"
        )


def _served(base: WhisperSegModel, audio: np.ndarray, sr: int, story: Story) -> list[Segment]:
    """The untuned model as served without a species (``served_config``)."""
    choice = served_config(base, audio, sr, story.min_frequency or None)
    return WhisperSegSegmenter(base, choice.config).segment(audio, sr)


def _tuned(
    model: WhisperSegModel, result: AdaptationResult, audio: np.ndarray, sr: int, kept_base
) -> list[Segment]:
    """The job's model with the settings it chose; ``kept_base`` when it kept the base."""
    if result.segmentation is None:
        return list(kept_base)
    return segment_recording(model, audio, sr, SegmentationConfig.from_dict(result.segmentation))


def _all_tuned(story: Story, model, result, base_found) -> list[list[Segment]]:
    return [
        _tuned(model, result, r.audio, r.sr, found)
        for r, found in zip(story.recordings, base_found, strict=True)
    ]


def _job(
    base: WhisperSegModel, examples: list[TrainingExample], config: AdaptationConfig
) -> tuple[WhisperSegModel, AdaptationResult, float]:
    started = time.perf_counter()
    model, result = adapt(base, examples, config)
    return model, result, time.perf_counter() - started


def _held_back(result: AdaptationResult) -> str:
    """The job's own figures on its held-back labels, its verdict and the model it kept."""
    v = result.validation
    return (
        f"held back {v.held_out_segments} calls: base {v.base_segment_f1:.3f}, finetuned "
        f"{v.finetuned_segment_f1:.3f}, verdict {v.verdict}, kept {v.kept}"
    )


def _line(label: str, story: Story, areas: Areas, rows: dict[str, list], extra: str) -> str:
    labelled = sum(b - a for v in areas.values() for a, b in v)
    calls = sum(len(e.segments) for e in examples_for(story, areas))
    figures = {name: scores(story, found, areas) for name, found in rows.items()}
    cells = "; ".join(f"{name} {a:.3f} / {b:.3f}" for name, (a, b) in figures.items())
    tally = ConfidenceTally(story)
    for index, (r, found) in enumerate(zip(story.recordings, rows["finetuned"], strict=True)):
        inside = areas.get(index, [])
        tally.add(_outside(found, inside), _outside(r.truth, inside))
    return (
        f"  {label}: {labelled:.1f} s, {calls} calls, {len(areas)} of "
        f"{len(story.recordings)} recordings labelled; F1 all unlabelled / recordings "
        f"without labels: {cells}{extra}; finetuned {tally.summary()}"
    )


def corpus_run(story: Story, base: WhisperSegModel, config: AdaptationConfig) -> None:
    """The three choices of what to label, and a second round for the suggestions."""
    energy = EnergySegmenter(story.min_frequency or None)
    energy_found = [energy.segment(r.audio, r.sr) for r in story.recordings]
    base_found = [_served(base, r.audio, r.sr, story) for r in story.recordings]
    area = default_area_seconds(story.budget, [s for p in base_found for s in p])
    choices: dict[str, Callable[[], Areas]] = {
        "first seconds": lambda: first_seconds(story),
        "random areas": lambda: random_areas(story, area),
        "suggested": lambda: suggested(story, base_found, energy_found, {}),
    }
    for label, choose in choices.items():
        areas = choose()
        model, result, wall = _job(base, examples_for(story, areas), config)
        tuned = _all_tuned(story, model, result, base_found)
        rows = {"energy": energy_found, "base": base_found, "finetuned": tuned}
        extra = f"; job {wall:.0f} s, {_held_back(result)}"
        print(_line(label, story, areas, rows, extra), flush=True)
        if label == "suggested":
            areas = suggested(story, tuned, energy_found, areas)
            model, result, wall = _job(base, examples_for(story, areas), config)
            rows["finetuned"] = _all_tuned(story, model, result, base_found)
            extra = f"; job {wall:.0f} s, {_held_back(result)}"
            print(_line("suggested, round 2", story, areas, rows, extra), flush=True)


def few_shot(
    story: Story, base: WhisperSegModel, config: AdaptationConfig, self_train: float | None
) -> None:
    """The first 5 calls of each recording labelled (to halfway to the 6th), one job per
    recording, the rest of that recording scored. With ``self_train``, a second job adds
    the first job's segments in the rest with at least that confidence."""
    pooled = {"energy": Counts(), "base": Counts(), "finetuned": Counts()}
    if self_train is not None:
        pooled["self-trained"] = Counts()
    energy = EnergySegmenter(story.min_frequency or None)
    tally = ConfidenceTally(story)
    for r in story.recordings:
        calls = sorted(r.truth, key=lambda s: s.onset)
        if len(calls) <= FEW_SHOT_CALLS:
            print(f"  {r.name}: {len(calls)} calls, skipped")
            continue
        cut = (calls[FEW_SHOT_CALLS - 1].offset + calls[FEW_SHOT_CALLS].onset) / 2
        example = slice_example(_whole(story, r), 0.0, cut)
        model, result, _ = _job(base, [example], config)
        rest = r.audio[round(cut * r.sr) :]
        truth = [replace(s, onset=s.onset - cut, offset=s.offset - cut) for s in calls
                 if s.onset >= cut]  # fmt: skip
        found = {"energy": energy.segment(rest, r.sr), "base": _served(base, rest, r.sr, story)}
        found["finetuned"] = _tuned(model, result, rest, r.sr, found["base"])
        if self_train is not None:
            pseudo = confident_clips(
                rest, r.sr, found["finetuned"], self_train, 10.0,
                min_frequency=story.min_frequency, source=f"{r.name} (unlabelled)",
            )  # fmt: skip
            model, result, _ = _job(base, [example, *pseudo], config)
            found["self-trained"] = _tuned(model, result, rest, r.sr, found["base"])
        counts = {
            k: segment_counts(v, truth, story.tolerance, story.typed) for k, v in found.items()
        }
        for k, c in counts.items():
            pooled[k] += c
        tally.add(found["finetuned"], truth)
        print(
            f"  few-shot {r.name}: rest {len(truth)} calls; "
            + ", ".join(f"{k} {c.f1:.3f}" for k, c in counts.items())
            + f" (kept {result.validation.kept})",
            flush=True,
        )
    print("  few-shot pooled: " + ", ".join(f"{k} {c.f1:.3f}" for k, c in pooled.items()))
    print(f"  few-shot finetuned {tally.summary()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", nargs="+", default=["generated", "mouse", "bengalese"])
    parser.add_argument("--few-shot", action="store_true", help="also the few-shot protocol")
    parser.add_argument("--no-corpus", action="store_true", help="only the few-shot protocol")
    parser.add_argument("--base", type=Path, help="base model folder for every story")
    parser.add_argument("--freeze-encoder", action="store_true")
    parser.add_argument("--steps", type=int, help="validation training steps")
    parser.add_argument(
        "--self-train",
        type=float,
        metavar="CONFIDENCE",
        help="few-shot: a second job on "
        "the first job's segments in the rest with at least this confidence",
    )
    parser.add_argument(
        "--scene-share",
        type=float,
        help="share of training crops from scenes composed of the labelled areas "
        f"(default {AdaptationConfig.scene_share}; 0: none)",
    )
    args = parser.parse_args()
    config = AdaptationConfig()
    if args.scene_share is not None:
        config = replace(config, scene_share=args.scene_share)
    training = replace(
        config.training,
        freeze_encoder=args.freeze_encoder,
        max_steps=args.steps or config.training.max_steps,
    )
    config = replace(config, training=training)
    for story in stories(args.stories):
        folder = args.base or default_base(story)
        if folder is None:
            print(f"{story.name}: no base that never heard it; give one with --base")
            continue
        total = sum(r.duration for r in story.recordings)
        print(
            f"{story.name}: {len(story.recordings)} recordings, {total:.0f} s, "
            f"{sum(len(r.truth) for r in story.recordings)} calls; budget {story.budget:.0f} s; "
            f"tolerance {story.tolerance * 1000:.0f} ms; base {folder}",
            flush=True,
        )
        base = WhisperSegModel.load(folder, device="cpu")
        if not args.no_corpus:
            corpus_run(story, base, config)
        if args.few_shot or args.no_corpus:
            few_shot(story, base, config, args.self_train)


if __name__ == "__main__":
    main()
