"""Held-out quality of a WhisperSeg model next to the energy baseline, plus a picture.

Prints segment F1 (10 ms tolerance) and frame F1 per held-out group for the model and
for the classical energy/threshold segmenter, the model's real-time factor, and draws
one held-out recording's spectrogram with the human (top track) and the predicted
(bottom track) segments under it. Then the species the shipped model never heard
(Bengalese finch, mouse ultrasound), segmented as ``/get-labels`` does when no species
is given (settings read off the audio), at each data set's own tolerance.

    python bench/model_quality.py [--model models/whisperseg-tiny] [--num-trials 3]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_registry import EnergySegmenter, recording_config  # noqa: E402
from spectrogram import compute_db, render_jpeg_base64, resolve_config  # noqa: E402
from whisperseg.datasets import (  # noqa: E402
    AnnotatedRecording,
    find_recordings,
    load_recording,
    shared_data_dir,
    split_recordings,
)
from whisperseg.energy import energy_segments  # noqa: E402
from whisperseg.evaluation import RecordingSegmenter, evaluate, whisperseg_segmenter  # noqa: E402
from whisperseg.model import WhisperSegModel  # noqa: E402
from whisperseg.segment import Segment  # noqa: E402
from whisperseg.segmentation import segment_recording  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
TRACK_HEIGHT = 24
# Species the shipped model was not trained on, and how many of their files to score.
UNSEEN = {"bengalese_finch": 20, "mouse": None}


def draw_segments(
    recording: AnnotatedRecording, predicted: list[Segment], out: Path, width: int = 1600
) -> None:
    """Spectrogram with a human track (green) and a predicted track (orange) under it."""
    human = list(recording.segments)
    config = resolve_config(
        recording.sr, len(recording.audio), num_spec_columns=width, max_frequency=12000
    )
    db = compute_db(recording.audio, 0, config)
    spectrogram = Image.open(io.BytesIO(base64.b64decode(render_jpeg_base64(db, "magma"))))
    canvas = Image.new("RGB", (width, spectrogram.height + 3 * TRACK_HEIGHT), "white")
    canvas.paste(spectrogram, (0, 0))
    draw = ImageDraw.Draw(canvas)
    seconds_per_pixel = config.hop_length / config.sampling_rate
    for track, (segments, colour, name) in enumerate(
        [(human, (40, 160, 60), "human"), (predicted, (230, 120, 20), "whisperseg-tiny")]
    ):
        top = spectrogram.height + TRACK_HEIGHT // 2 + track * TRACK_HEIGHT
        for s in segments:
            left, right = s.onset / seconds_per_pixel, s.offset / seconds_per_pixel
            draw.rectangle([left, top, max(right, left + 1), top + TRACK_HEIGHT - 6], fill=colour)
        draw.text((4, top), name, fill=(0, 0, 0))
    canvas.save(out)


def without_species(model: WhisperSegModel) -> RecordingSegmenter:
    """As ``/get-labels`` runs a model given no species (the band floor the file names)."""

    def run(recording: AnnotatedRecording) -> list[Segment]:
        audio, sr, floor = recording.audio, recording.sr, recording.min_frequency or None
        return segment_recording(model, audio, sr, recording_config(model, audio, sr, floor))

    return run


def energy_with_floor(recording: AnnotatedRecording) -> list[Segment]:
    """The energy baseline as the server runs it for a request with ``min_frequency``."""
    return EnergySegmenter(recording.min_frequency).segment(recording.audio, recording.sr)


def print_unseen_species(model: WhisperSegModel, data: Path) -> None:
    files = [p for folder, limit in UNSEEN.items() for p in find_recordings(data / folder)[:limit]]
    reports = {
        "whisperseg": evaluate(without_species(model), files),
        "energy-threshold": evaluate(energy_with_floor, files),
    }
    print(f"\nspecies never trained on, no species given ({len(files)} files):")
    for name, report in reports.items():
        for group, scores in report.groups.items():
            print(
                f"{group:<20} {name:<18} {scores['segment_f1']:>10.3f} {scores['frame_f1']:>9.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(PROJECT / "models" / "whisperseg-tiny"))
    parser.add_argument("--num-trials", type=int, default=3)
    parser.add_argument("--figure", help="PNG to write (default: heldout_example.png in the model)")
    parser.add_argument("--json", help="also write the figures as JSON here")
    parser.add_argument("--no-quantize", action="store_true", help="full precision on the CPU")
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None:
        sys.exit("../shared/data not found: the held-out recordings live there")
    held_out = split_recordings(find_recordings(data))[1]
    model = WhisperSegModel.load(args.model, quantize=not args.no_quantize)
    print(f"model {args.model} on {model.device}, {torch.get_num_threads()} threads")

    reports = {
        "whisperseg": evaluate(whisperseg_segmenter(model, args.num_trials), held_out, 0.01),
        "energy-threshold": evaluate(lambda r: energy_segments(r.audio, r.sr), held_out, 0.01),
    }
    print(f"\n{'group':<20} {'segmenter':<18} {'segment F1':>10} {'frame F1':>9}")
    for name, report in reports.items():
        for group, scores in report.groups.items():
            print(
                f"{group:<20} {name:<18} {scores['segment_f1']:>10.3f} {scores['frame_f1']:>9.3f}"
            )
    model_report = reports["whisperseg"]
    print(
        f"\nreal-time factor ({args.num_trials} trials): {model_report.real_time_factor:.3f} "
        f"({model_report.compute_seconds:.1f} s for {model_report.audio_seconds:.1f} s of audio)"
    )

    example = next(p for p in held_out if "g4p5U" in p.name)
    figure = Path(args.figure) if args.figure else Path(args.model) / "heldout_example.png"
    recording = load_recording(example)
    predicted = whisperseg_segmenter(model, args.num_trials)(recording)
    draw_segments(recording, predicted, figure)
    print(f"figure: {figure} ({example.name})")
    print_unseen_species(model, data)
    if args.json:
        figures = {
            name: {
                "groups": report.groups,
                "real_time_factor": report.real_time_factor,
                "audio_seconds": report.audio_seconds,
            }
            for name, report in reports.items()
        }
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
