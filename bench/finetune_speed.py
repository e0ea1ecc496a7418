"""Wall time of the default finetuning job on 45 s of labelled audio, and F1 on the rest.

Follows the server's path (annotated area -> training clips -> the job: validation on
held-back labels, then training on all -> segment the unlabelled rest with the new model
at the settings the job chose) for two stories:

- synthetic song, three syllable types A/B/C: typed segment F1 (clusters must match);
- a held-out juvenile zebra finch (R3625, files joined): voice-activity segment F1.

    python bench/finetune_speed.py [--labelled-seconds 45] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotations.labels import Label, LabelledRecording, training_clips  # noqa: E402
from example_audios.make_example_song import make_song  # noqa: E402
from jobs.finetune import finetune_config  # noqa: E402
from server.settings import ServerSettings  # noqa: E402
from whisperseg.adaptation import adapt  # noqa: E402
from whisperseg.datasets import find_recordings, load_recording, shared_data_dir  # noqa: E402
from whisperseg.metrics import evaluate_files  # noqa: E402
from whisperseg.model import WhisperSegModel  # noqa: E402
from whisperseg.segment import (
    Segment,  # noqa: E402
    split_cluster,  # noqa: E402
)
from whisperseg.segmentation import SegmentationConfig, segment_recording  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]


def juvenile_recording() -> tuple[np.ndarray, int, list[Segment]]:
    """The held-out juvenile's files joined end to end, labels shifted to match."""
    data = shared_data_dir()
    if data is None:
        sys.exit("../shared/data not found")
    audio, segments, offset, sr = [], [], 0.0, 32000
    for path in find_recordings(data / "zebra_finch" / "juveniles"):
        if "R3625" not in path.name:
            continue
        recording = load_recording(path)
        sr = recording.sr
        audio.append(recording.audio)
        segments += [replace(s, onset=s.onset + offset, offset=s.offset + offset, cluster="vocal")
                     for s in recording.segments]  # fmt: skip
        offset += recording.duration
    return np.concatenate(audio), sr, segments


def run_story(
    name: str, audio: np.ndarray, sr: int, truth: list[Segment], args, match_cluster: bool
) -> None:
    labelled = args.labelled_seconds
    labels = [
        Label(s.onset, s.offset, "bench-species", "bench-bird", s.cluster)
        for s in truth
        if s.offset <= labelled
    ]
    examples = training_clips([LabelledRecording(audio, sr, [(0.0, labelled)], labels)])
    base = WhisperSegModel.load(args.model, device=args.device)
    config = finetune_config(args.steps)
    started = time.perf_counter()
    model, result = adapt(base, examples, config)
    with tempfile.TemporaryDirectory() as scratch:
        model.save(Path(scratch) / "model")
    train_seconds = time.perf_counter() - started

    segmentation = SegmentationConfig.from_dict(result.segmentation)
    losses = result.losses
    rest = audio[round(labelled * sr) :]
    predicted = [
        Segment(s.onset + labelled, s.offset + labelled, split_cluster(s.cluster)[2], s.confidence)
        for s in segment_recording(model, rest, sr, segmentation)
    ]
    unlabelled_truth = [s for s in truth if s.onset >= labelled]
    scores = evaluate_files([(predicted, unlabelled_truth)], 0.01, match_cluster=match_cluster)
    print(
        f"{name:<24} {len(labels):>4} labels, {args.steps} steps: "
        f"job {train_seconds:6.1f} s (loss {np.mean(losses[:10]):.2f} -> "
        f"{np.mean(losses[-10:]):.2f}); unlabelled {len(rest) / sr:5.1f} s: "
        f"segment F1 {scores['segment_f1']:.3f}, frame F1 {scores['frame_f1']:.3f}; "
        f"validation {result.validation.verdict} "
        f"(finetuned {result.validation.finetuned_segment_f1:.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(PROJECT / "models" / "whisperseg-tiny"))
    parser.add_argument("--labelled-seconds", type=float, default=45.0)
    parser.add_argument(
        "--steps", type=int, default=ServerSettings().finetune_max_steps, help="training steps"
    )
    parser.add_argument("--device", help="cpu or cuda (default: GPU if present)")
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}, device {args.device or 'auto'}")
    song, song_truth = make_song(seed=21, duration=2 * args.labelled_seconds)
    run_story("synthetic song (A/B/C)", song, 32000, song_truth, args, match_cluster=True)
    audio, sr, truth = juvenile_recording()
    run_story("juvenile zebra finch", audio, sr, truth, args, match_cluster=False)


if __name__ == "__main__":
    main()
