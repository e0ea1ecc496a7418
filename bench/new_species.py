"""Learning a new species from seconds of labels: energy, base model and finetuned, same run.

Each story labels the first seconds of a recording (files joined in name order), runs
the finetuning job (``whisperseg.adaptation.adapt``: validation on held-back labels,
then training on all of them) and scores segment F1 on the unlabelled rest for the
energy-threshold baseline, the untuned base model and the finetuned model.

    python bench/new_species.py [--stories mammal mouse bengalese canary] [--steps N]

Each story's base never heard its species: the shipped model for the mammal, the
shipped recipe without mouse or without Bengalese finch for those stories, and the
first recipe on zebra finch only for the canary (``bench/recipe_variants.py``: trained
once, cached in bench/.cache/).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.recipe_variants import canary_free, leave_out  # noqa: E402
from whisperseg.adaptation import AdaptationConfig, adapt  # noqa: E402
from whisperseg.datasets import find_recordings, load_recording, shared_data_dir  # noqa: E402
from whisperseg.energy import EnergyParams, energy_segments  # noqa: E402
from whisperseg.metrics import segment_counts  # noqa: E402
from whisperseg.model import WhisperSegModel  # noqa: E402
from whisperseg.segment import Segment  # noqa: E402
from whisperseg.segmentation import (  # noqa: E402
    SegmentationConfig,
    segment_recording,
    time_step_from_labels,
)
from whisperseg.training import TrainingExample, TrainingProgress  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
SHIPPED = PROJECT / "models" / "whisperseg-tiny"
# Segmentation without the fragment tidying learned from the labels (generic defaults).
UNTIDY = {"min_gap": 0.0, "min_segment_length": 0.01}


@dataclass(frozen=True)
class Story:
    """A recording, its true segments, how much of it is labelled, how it is scored."""

    name: str
    audio: np.ndarray
    sr: int
    truth: list[Segment]
    labelled_seconds: float
    tolerance: float
    min_frequency: float = 0.0
    rest_seconds: float | None = None
    base: Path = SHIPPED

    @property
    def typed(self) -> bool:
        return len({s.cluster for s in self.truth}) > 1


def mammal_like(
    seed: int = 3,
    duration: float = 90.0,
    sr: int = 16000,
    lengths: tuple[float, float] = (0.1, 0.5),
    noise_gain: float = 1.0,
) -> tuple:
    """Calls of ``lengths`` (100-500 ms): a frequency-modulated harmonic stack (f0 250-700
    Hz, vibrato, falling or rising) with soft onsets, 0.1-1.5 s apart, in coloured noise
    (times ``noise_gain``) with clicks."""
    rng = np.random.default_rng(seed)
    noise = np.cumsum(rng.normal(0, 1, round(duration * sr)))  # brown, then whitened a bit
    noise = noise_gain * 0.6 * (noise - np.convolve(noise, np.ones(64) / 64, "same")) / 40
    audio = (noise + rng.normal(0, 0.004, noise.size)).astype(np.float32)
    for _ in range(int(duration * 2)):  # handling clicks: loud, a few ms
        at = rng.integers(0, audio.size - 100)
        audio[at : at + 60] += rng.normal(0, 0.05, 60).astype(np.float32)
    truth, t = [], 0.3
    while True:
        length = rng.uniform(*lengths)
        if t + length > duration - 0.3:
            break
        n = round(length * sr)
        progress = np.linspace(0, 1, n, endpoint=False)
        f0 = rng.uniform(250, 700) * (1 + rng.uniform(-0.4, 0.4) * progress)
        f0 = f0 * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(5, 12) * progress * length))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        wave = sum(np.sin(k * phase) * rng.uniform(0.3, 1) / k for k in range(1, 7))
        ramp = min(n // 4, round(0.02 * sr))
        envelope = np.ones(n)
        envelope[:ramp] = np.sin(np.linspace(0, np.pi / 2, ramp)) ** 2
        envelope[n - ramp :] = envelope[:ramp][::-1]
        start = round(t * sr)
        audio[start : start + n] += (wave * envelope * 10 ** rng.uniform(-1.3, -0.6)).astype(
            np.float32
        )
        truth.append(Segment(start / sr, (start + n) / sr, "call"))
        t += length + rng.uniform(0.1, 1.5)
    return np.clip(audio, -1, 1), sr, truth


def joined(folder: Path, limit: int | None = None) -> tuple:
    """A folder's recordings joined end to end (name order), labels shifted to match."""
    return joined_files(find_recordings(folder)[:limit])


def joined_files(paths: list[Path]) -> tuple:
    """(audio, sr, truth) of recordings joined end to end, labels shifted to match."""
    audio, truth, offset, sr = [], [], 0.0, 0
    for path in paths:
        recording = load_recording(path)
        sr = recording.sr
        audio.append(recording.audio)
        truth += [replace(s, onset=s.onset + offset, offset=s.offset + offset)
                  for s in recording.segments]  # fmt: skip
        offset += recording.duration
    return np.concatenate(audio), sr, truth


def stories(names: list[str], base_steps: int) -> list[Story]:
    data = shared_data_dir()
    found = []
    for name in names:
        if name == "mammal":
            audio, sr, truth = mammal_like()
            found.append(Story("mammal-like, 16 kHz", audio, sr, truth, 30.0, 0.02))
        elif data is None:
            print(f"{name}: ../shared/data not found, skipped")
        elif name == "mouse":
            audio, sr, truth = joined(data / "mouse")
            mouse = Story("mouse USV, 250 kHz", audio, sr, truth, 10.0, 0.01, 35000.0)
            found.append(replace(mouse, base=leave_out("mouse")))
        elif name == "bengalese":
            audio, sr, truth = joined(data / "bengalese_finch", limit=16)
            bengalese = Story("Bengalese finch types", audio, sr, truth, 30.0, 0.01, 0.0, 60.0)
            found.append(replace(bengalese, base=leave_out("bengalese_finch")))
        elif name == "canary":
            audio, sr, truth = joined(data / "canary")
            resampled = load_recording(find_recordings(data / "canary")[0]).species_sr
            audio = _resample(audio, sr, resampled)
            found.append(
                Story("canary", audio, resampled, truth, 16.0, 0.01, base=canary_free(base_steps))
            )
    return found


def _resample(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    import librosa

    return librosa.resample(audio, orig_sr=sr, target_sr=target, res_type="soxr_hq")


def _reporter(name: str) -> Callable[[TrainingProgress], None]:
    """Print the job's progress and ETA at every tenth, to check the ETA's honesty."""
    shown = [-1]

    def report(p: TrainingProgress) -> None:
        if int(p.fraction * 10) > shown[0]:
            shown[0] = int(p.fraction * 10)
            print(f"  {name}: {p.fraction:4.0%} after {p.elapsed_s:4.0f} s, ETA {p.eta_s:4.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip

    return report


def run(story: Story, config: AdaptationConfig, save_to: Path | None = None) -> dict:
    """Finetune on the labelled start; F1 of energy, base and finetuned on the rest."""
    labelled = story.labelled_seconds
    cut = round(labelled * story.sr)
    labels = tuple(s for s in story.truth if s.offset <= labelled)
    example = TrainingExample(story.audio[:cut], story.sr, labels, 0.0, story.min_frequency)
    end = None if story.rest_seconds is None else cut + round(story.rest_seconds * story.sr)
    rest = story.audio[cut:end]
    rest_end = labelled + len(rest) / story.sr
    truth = [replace(s, onset=s.onset - labelled, offset=s.offset - labelled)
             for s in story.truth if s.onset >= labelled and s.offset <= rest_end]  # fmt: skip
    base = WhisperSegModel.load(story.base, device="cpu")
    started = time.perf_counter()
    model, result = adapt(base, [example], config, progress=_reporter(story.name))
    wall = time.perf_counter() - started
    if save_to:
        model.save(save_to / story.name.split(",")[0].replace(" ", "-"))
    settings = SegmentationConfig.from_dict(result.segmentation)
    cluster = labels[0].cluster
    energy_params = EnergyParams.with_floor(story.min_frequency)
    predictions = {
        "energy": energy_segments(rest, story.sr, energy_params, cluster),
        "base": segment_recording(base, rest, story.sr, settings),
        "finetuned": segment_recording(model, rest, story.sr, settings),
        "untidied": segment_recording(model, rest, story.sr, replace(settings, **UNTIDY)),
    }
    scores = {
        name: segment_counts(p, truth, story.tolerance, match_cluster=story.typed).f1
        for name, p in predictions.items()
    }
    v = result.validation
    kind = "typed " if story.typed else ""
    print(
        f"{story.name}: {len(labels)} labels in {labelled:.0f} s; unlabelled rest "
        f"{len(rest) / story.sr:.0f} s, {len(truth)} segments, {kind}segment F1 at "
        f"{story.tolerance * 1000:.0f} ms: energy {scores['energy']:.3f}, base "
        f"{scores['base']:.3f}, finetuned {scores['finetuned']:.3f} (untidied "
        f"{scores['untidied']:.3f}); job {wall:.0f} s\n"
        f"  validation on {v.held_out_segments} held-back labels at "
        f"{v.tolerance * 1000:.0f} ms: energy {v.energy_segment_f1:.3f}, base "
        f"{v.base_segment_f1:.3f}, finetuned {v.finetuned_segment_f1:.3f} -> "
        f"{v.verdict}\n  settings {result.segmentation}",
        flush=True,
    )
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", nargs="+", default=["mammal", "mouse", "bengalese", "canary"])
    parser.add_argument("--steps", type=int, help="validation training steps")
    parser.add_argument("--final-steps", type=int, help="steps on all labels after validation")
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--no-post-process", action="store_true")
    parser.add_argument(
        "--label-time-step", action="store_true", help="native rate, step = median / 25 (old)"
    )
    parser.add_argument("--save-to", type=Path, help="keep each finetuned model in this folder")
    parser.add_argument("--base-steps", type=int, default=300, help="canary-free base model")
    args = parser.parse_args()
    config = AdaptationConfig()
    training = config.training
    config = replace(
        config,
        training=replace(
            training,
            max_steps=args.steps or training.max_steps,
            learning_rate=args.learning_rate or training.learning_rate,
        ),
        final_steps=config.final_steps if args.final_steps is None else args.final_steps,
        post_process=not args.no_post_process,
    )
    for story in stories(args.stories, args.base_steps):
        if args.label_time_step:
            hop = round(time_step_from_labels([s.duration for s in story.truth]) * story.sr)
            config = replace(config, views=((story.sr, hop),))
        run(story, config, args.save_to)


if __name__ == "__main__":
    main()
