"""Does ``confidence`` predict whether a predicted segment is right? Fit it, and measure.

Segments every held-out recording of the shared data (as ``bench/model_quality.py`` does:
``whisperseg.evaluation.held_out_segmenter``'s settings) and new species the model never
heard (generated 16 kHz mammal-like calls with no species given; with
``--leave-one-out``, the shipped recipe without Bengalese finch and without mouse, scored
on those species: ``bench/recipe_variants.py`` trains them once, ~10 min each). Each
predicted segment is right when it matches a true one at its file's tolerance
(``whisperseg.metrics.matched_predictions``, clusters ignored: voice-activity labels).

It fits the logistic calibrations of ``whisperseg/confidence.py`` on all of it, every
group weighing the same (``--write`` saves them to ``whisperseg/confidence.json``),
and prints per group and pooled: precision of all segments, ROC AUC and precision of
the segments with confidence >= 0.9 for the old trial vote, the shipped calibration and
the calibration fitted without that group (what a species nobody fitted on gets), and
the same for the energy baseline's segments. Goal (issue 21): AUC >= 0.80 and precision
>= 0.95 at >= 0.9 (or 0.15 above all segments' where those are above 0.80).

    python bench/confidence.py [--model models/whisperseg-tiny] [--write] [--reuse]
        [--leave-one-out]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.new_species import mammal_like  # noqa: E402
from bench.recipe_variants import CACHE, leave_out  # noqa: E402
from whisperseg import confidence  # noqa: E402
from whisperseg.autoconfig import coarsest, resampled_to_model_rate  # noqa: E402
from whisperseg.confidence import Calibration  # noqa: E402
from whisperseg.datasets import (  # noqa: E402
    AnnotatedRecording,
    find_recordings,
    held_out_group,
    load_recording,
    shared_data_dir,
    split_recordings,
)
from whisperseg.energy import EnergyParams, energy_segments  # noqa: E402
from whisperseg.evaluation import group_name, recording_config  # noqa: E402
from whisperseg.metrics import matched_predictions  # noqa: E402
from whisperseg.model import WhisperSegModel  # noqa: E402
from whisperseg.segmentation import SegmentationConfig, segment_with_evidence  # noqa: E402
from whisperseg.segmenters import served_config  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
EVIDENCE_CACHE = CACHE / "confidence-evidence.pkl"
THRESHOLD = 0.9
NEW_SPECIES_LOO = {"bengalese_finch": True, "mouse": False}  # held-out files only?


@dataclass
class Group:
    """Evidence and outcome of every predicted segment of one group of recordings."""

    evidence: dict[str, list[float]]
    right: list[bool]

    def add(self, evidence: dict[str, np.ndarray], right: np.ndarray) -> None:
        for name, values in evidence.items():
            self.evidence.setdefault(name, []).extend(np.asarray(values, dtype=float).tolist())
        self.right.extend(bool(r) for r in right)

    def arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return {k: np.array(v) for k, v in self.evidence.items()}, np.array(self.right)


class Timer:
    """Seconds spent in a function (wrapped in place) and in whole segmentations."""

    def __init__(self) -> None:
        self.scoring = self.evidence = self.total = 0.0

    def wrap(self, owner: object, name: str, field: str) -> None:
        real = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                setattr(self, field, getattr(self, field) + time.perf_counter() - started)

        setattr(owner, name, timed)


def held_out_config(model: WhisperSegModel, recording: AnnotatedRecording) -> SegmentationConfig:
    """``held_out_segmenter``'s settings: the data set's, or as served without a species
    for recordings far from the model's rate (mouse ultrasound)."""
    model_rate = coarsest(model.default_segmentation_config).sr or 0
    if resampled_to_model_rate(recording.species_sr, model_rate):
        return recording_config(recording)
    floor = recording.min_frequency or None
    config = served_config(model, recording.audio, recording.sr, floor).config
    return replace(config, num_trials=3)


def served(model: WhisperSegModel, recording: AnnotatedRecording) -> SegmentationConfig:
    floor = recording.min_frequency or None
    return served_config(model, recording.audio, recording.sr, floor).config


def collect(
    model: WhisperSegModel,
    recordings: list[AnnotatedRecording],
    groups: dict[str, Group],
    energy: dict[str, Group],
    name: Callable[[AnnotatedRecording], str],
    settings: Callable[[WhisperSegModel, AnnotatedRecording], SegmentationConfig],
    timer: Timer,
) -> None:
    for recording in recordings:
        truth, tolerance = list(recording.segments), recording.tolerance
        config = settings(model, recording)
        started = time.perf_counter()
        segments, evidence = segment_with_evidence(model, recording.audio, recording.sr, config)
        timer.total += time.perf_counter() - started
        right = matched_predictions(segments, truth, tolerance, match_cluster=False)
        groups.setdefault(name(recording), Group({}, [])).add(evidence, right)
        params = EnergyParams.with_floor(recording.min_frequency)
        found = energy_segments(recording.audio, recording.sr, params)
        floor = recording.min_frequency or None
        found_evidence = confidence.energy_evidence(found, recording.audio, recording.sr, floor)
        right = matched_predictions(found, truth, tolerance, match_cluster=False)
        energy.setdefault(name(recording), Group({}, [])).add(found_evidence, right)


def mammal_recording() -> AnnotatedRecording:
    audio, sr, truth = mammal_like()
    return AnnotatedRecording(
        Path("mammal-like.wav"), audio, sr, sr, tuple(truth), "mammal", 0.0, 0.0, 0.0, 0.02,
        0.001, 0.02,
    )  # fmt: skip


def gather(args: argparse.Namespace) -> tuple[dict[str, Group], dict[str, Group], Timer]:
    data = shared_data_dir()
    if data is None:
        sys.exit("../shared/data not found: the held-out recordings live there")
    model = WhisperSegModel.load(args.model, quantize=True)
    timer = Timer()
    timer.wrap(model, "token_scores", "scoring")
    timer.wrap(confidence, "whisperseg_evidence", "evidence")
    groups: dict[str, Group] = {}
    energy: dict[str, Group] = {}
    held_out = [load_recording(p) for p in split_recordings(find_recordings(data))[1]]
    print(f"segmenting {len(held_out)} held-out recordings ...", file=sys.stderr, flush=True)

    def by_group(r: AnnotatedRecording) -> str:
        return group_name(r.path)

    collect(model, held_out, groups, energy, by_group, held_out_config, timer)
    print("segmenting generated mammal-like calls ...", file=sys.stderr, flush=True)
    collect(model, [mammal_recording()], groups, energy, lambda r: "new: mammal-like", served,
            timer)  # fmt: skip
    for species, held_out_only in NEW_SPECIES_LOO.items():
        folder = CACHE / f"whisperseg-tiny-without-{species}"
        if not (args.leave_one_out or (folder / "config.json").is_file()):
            continue
        unheard = WhisperSegModel.load(leave_out(species), quantize=True)
        timer.wrap(unheard, "token_scores", "scoring")
        files = find_recordings(data / species)
        files = [p for p in files if held_out_group(p)] if held_out_only else files
        print(f"segmenting {species}, never heard ...", file=sys.stderr, flush=True)
        collect(unheard, [load_recording(p) for p in files], groups, {},
                lambda r, s=species: f"new: {s}", served, timer)  # fmt: skip
    return groups, energy, timer


# The direction each feature can only push towards "right", on any species: a fit that
# says otherwise has learnt the differences between the few groups, so that feature goes.
SIGNS = {"vote": 1, "overlap": 1, "boundary": 1, "snr": 1, "duration": -1}


def fit(groups: dict[str, Group], features: tuple[str, ...]) -> Calibration:
    """A logistic model over ``features``, each group weighing the same; features whose
    coefficient comes out against :data:`SIGNS` are left out, the worst first."""
    while True:
        calibration = _fit(groups, features)
        wrong = [(c * SIGNS[f], f) for f, c in zip(features, calibration.coef, strict=True)]
        worst = min(wrong)
        if worst[0] >= 0 or len(features) == 1:
            return calibration
        features = tuple(f for f in features if f != worst[1])


def _fit(groups: dict[str, Group], features: tuple[str, ...]) -> Calibration:
    xs, ys, ws = [], [], []
    for group in groups.values():
        evidence, right = group.arrays()
        if not len(right):
            continue
        xs.append(np.stack([evidence[f] for f in features], 1))
        ys.append(right)
        ws.append(np.full(len(right), 1.0 / len(right)))
    x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
    w = w / w.mean()
    mean = np.average(x, axis=0, weights=w)
    scale = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=w)) + 1e-9
    regression = LogisticRegression(C=1.0, max_iter=1000)
    regression.fit((x - mean) / scale, y, sample_weight=w)
    return Calibration(
        features,
        tuple(np.round(mean, 6).tolist()),
        tuple(np.round(scale, 6).tolist()),
        tuple(np.round(regression.coef_[0], 6).tolist()),
        round(float(regression.intercept_[0]), 6),
    )


def scores(p: np.ndarray, right: np.ndarray) -> tuple[str, str, int]:
    """(AUC, precision at >= THRESHOLD, count at >= THRESHOLD) as printed."""
    auc = f"{roc_auc_score(right, p):.3f}" if 0 < right.sum() < len(right) else "n/a"
    sure = p >= THRESHOLD
    precision = f"{right[sure].mean():.3f}" if sure.any() else "n/a"
    return auc, precision, int(sure.sum())


def report(title: str, groups: dict[str, Group], name: str, old: str | None) -> Calibration:
    """Print old vs shipped vs left-out-of-the-fit per group and pooled; the shipped fit."""
    features = confidence.FEATURES[name]
    shipped = fit(groups, features)
    print(f"\n{title} ({', '.join(features)}; kept in the shipped fit: "
          f"{', '.join(shipped.features)})")  # fmt: skip
    print(
        f"{'group':<26} {'segs':>5} {'prec':>6} | {'AUC old':>7} {'new':>6} {'w/o':>6} | "
        f"{'P>=.9 old':>9} {'new':>6} {'w/o':>6} | {'n>=.9 new':>9}"
    )
    pooled: dict[str, list] = {"old": [], "new": [], "loo": [], "right": []}
    for group_name_, group in groups.items():
        evidence, right = group.arrays()
        if not len(right):
            continue
        others = {k: g for k, g in groups.items() if k != group_name_}
        loo = fit(others, features).probability(evidence)
        new = shipped.probability(evidence)
        vote = evidence[old] if old else np.ones(len(right))
        for key, values in (("old", vote), ("new", new), ("loo", loo), ("right", right)):
            pooled[key].append(values)
        _row(group_name_, right, vote, new, loo)
    _row("pooled", *(np.concatenate(pooled[k]) for k in ("right", "old", "new", "loo")))
    return shipped


def _row(name: str, right, old, new, loo) -> None:
    a_old, p_old, _ = scores(old, right)
    a_new, p_new, n_new = scores(new, right)
    a_loo, p_loo, _ = scores(loo, right)
    print(
        f"{name:<26} {len(right):>5} {right.mean():>6.3f} | {a_old:>7} {a_new:>6} {a_loo:>6} | "
        f"{p_old:>9} {p_new:>6} {p_loo:>6} | {n_new:>9}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(PROJECT / "models" / "whisperseg-tiny"))
    parser.add_argument("--write", action="store_true", help="save the fit to confidence.json")
    parser.add_argument("--reuse", action="store_true", help="the last run's evidence (cached)")
    parser.add_argument(
        "--leave-one-out", action="store_true", help="train the species-less recipes if needed"
    )
    args = parser.parse_args()
    if args.reuse and EVIDENCE_CACHE.is_file():
        groups, energy, timer = pickle.loads(EVIDENCE_CACHE.read_bytes())
    else:
        groups, energy, timer = gather(args)
        EVIDENCE_CACHE.parent.mkdir(exist_ok=True)
        EVIDENCE_CACHE.write_bytes(pickle.dumps((groups, energy, timer)))
    print(f"model {args.model}; confidence >= {THRESHOLD}; old = the trial vote; new = the "
          "shipped fit (all groups); w/o = fitted without the row's group")  # fmt: skip
    if timer.total:
        print(
            f"cost: boundary scores {timer.scoring:.2f} s + evidence {timer.evidence:.2f} s of "
            f"{timer.total:.1f} s segmenting ({(timer.scoring + timer.evidence) / timer.total:.1%})"
        )
    scored = report("WhisperSeg, decoder scores", groups, confidence.SCORED, "vote")
    unscored = report("WhisperSeg, no decoder scores", groups, confidence.UNSCORED, "vote")
    energy_fit = report("energy-threshold (old: 1.0)", energy, confidence.ENERGY, None)
    if args.write:
        about = (
            "Logistic calibrations of whisperseg/confidence.py, fitted by "
            f"bench/confidence.py on {', '.join(groups)} ({Path(args.model).name}), "
            f"{time.strftime('%Y-%m-%d')}"
        )
        fitted = {
            confidence.SCORED: scored,
            confidence.UNSCORED: unscored,
            confidence.ENERGY: energy_fit,
        }
        confidence.save_calibrations(confidence.DEFAULT_CALIBRATION, fitted, about)
        print(f"\nwritten: {confidence.DEFAULT_CALIBRATION}")


if __name__ == "__main__":
    main()
