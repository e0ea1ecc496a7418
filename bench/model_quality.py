"""Held-out quality of a WhisperSeg model next to the energy baseline, plus a picture.

Prints segment F1 (10 ms tolerance) and frame F1 per held-out group for the model and
for the classical energy/threshold segmenter, the model's real-time factor, and draws
one held-out recording's spectrogram with the human (top track) and the predicted
(bottom track) segments under it. Then leave-one-out: the shipped recipe trained
without Bengalese finch, and without mouse (``bench/recipe_variants.py``: about 10 min
each on a 2-core CPU, once, then cached), scored on the species it never heard with no
species given (settings read off the audio, as ``/get-labels`` does), at each data
set's own tolerance. And a generated 16 kHz mammal-like species, in none of the data.

    python bench/model_quality.py [--model models/whisperseg-tiny] [--num-trials 3]
        [--recipe configs/whisperseg-tiny.json] [--leave-out SPECIES] [--skip-leave-one-out]
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

from bench.new_species import mammal_like  # noqa: E402
from bench.recipe_variants import SHIPPED_RECIPE, leave_out  # noqa: E402
from spectrogram import compute_db, render_jpeg_base64, resolve_config  # noqa: E402
from whisperseg.datasets import (  # noqa: E402
    AnnotatedRecording,
    find_recordings,
    held_out_group,
    load_recording,
    shared_data_dir,
    split_recordings,
)
from whisperseg.evaluation import (  # noqa: E402
    evaluate,
    held_out_segmenter,
    served_segmenter,
    whisperseg_segmenter,
)
from whisperseg.metrics import evaluate_files  # noqa: E402
from whisperseg.model import WhisperSegModel  # noqa: E402
from whisperseg.segment import Segment  # noqa: E402
from whisperseg.segmentation import segment_recording  # noqa: E402
from whisperseg.segmenters import EnergySegmenter, served_config  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
TRACK_HEIGHT = 24
# Species left out of the recipe -> (data folder, score its held-out files only). A
# model without mouse never heard one, so all mouse files count; Bengalese finch is
# scored on the files held out of the shipped model too, for a like-for-like figure.
LEAVE_ONE_OUT = {"bengalese_finch": ("bengalese_finch", True), "mouse": ("mouse", False)}


def draw_segments(
    recording: AnnotatedRecording,
    predicted: list[Segment],
    model_name: str,
    out: Path,
    width: int = 1600,
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
        [(human, (40, 160, 60), "human"), (predicted, (230, 120, 20), model_name)]
    ):
        top = spectrogram.height + TRACK_HEIGHT // 2 + track * TRACK_HEIGHT
        for s in segments:
            left, right = s.onset / seconds_per_pixel, s.offset / seconds_per_pixel
            draw.rectangle([left, top, max(right, left + 1), top + TRACK_HEIGHT - 6], fill=colour)
        draw.text((4, top), name, fill=(0, 0, 0))
    canvas.save(out)


def energy_with_floor(recording: AnnotatedRecording) -> list[Segment]:
    """The energy baseline as the server runs it for a request with ``min_frequency``."""
    return EnergySegmenter(recording.min_frequency).segment(recording.audio, recording.sr)


def print_leave_one_out(data: Path, recipe_file: Path, species_left_out: list[str]) -> None:
    """The shipped recipe without one species, scored on that species with no species
    given (as a user of an unheard species first sees it), beside the energy baseline."""
    print(f"\nleave one species out of {recipe_file.name}, no species given:")
    for species in species_left_out:
        folder, held_out_only = LEAVE_ONE_OUT[species]
        files = find_recordings(data / folder)
        files = [p for p in files if held_out_group(p)] if held_out_only else files
        model = WhisperSegModel.load(leave_out(species, recipe_file), quantize=True)
        recordings = [load_recording(p) for p in files]
        tolerance = recordings[0].tolerance
        segmenters = {"whisperseg": served_segmenter(model), "energy-threshold": energy_with_floor}
        for name, segmenter in segmenters.items():
            pairs = [(segmenter(r), list(r.segments)) for r in recordings]
            f1 = evaluate_files(pairs, tolerance, match_cluster=False)["segment_f1"]
            label = f"{species} ({len(files)} files)"
            print(f"{label:<28} {name:<18} {f1:>10.3f}")


def print_mammal_like(model: WhisperSegModel) -> None:
    """A generated 16 kHz mammal (in none of the data), segmented as ``/get-labels`` does
    without a species, beside the energy baseline, at 20 ms."""
    audio, sr, truth = mammal_like()
    found = {
        "whisperseg": segment_recording(model, audio, sr, served_config(model, audio, sr).config),
        "energy-threshold": EnergySegmenter(None).segment(audio, sr),
    }
    print(f"\ngenerated mammal-like calls, 16 kHz, {len(truth)} calls, no species given:")
    for name, segments in found.items():
        f1 = evaluate_files([(segments, truth)], 0.02, match_cluster=False)["segment_f1"]
        print(f"{'mammal-like':<28} {name:<18} {f1:>10.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(PROJECT / "models" / "whisperseg-tiny"))
    parser.add_argument("--num-trials", type=int, default=3)
    parser.add_argument("--figure", help="PNG to write (default: heldout_example.png in the model)")
    parser.add_argument("--json", help="also write the figures as JSON here")
    parser.add_argument("--no-quantize", action="store_true", help="full precision on the CPU")
    parser.add_argument(
        "--skip-leave-one-out", action="store_true", help="(trains two models on first use)"
    )
    parser.add_argument(
        "--recipe", default=str(SHIPPED_RECIPE), help="the recipe to leave species out of"
    )
    parser.add_argument(
        "--leave-out",
        action="append",
        choices=list(LEAVE_ONE_OUT),
        help="leave only this species out (repeatable; default: each in turn)",
    )
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None:
        sys.exit("../shared/data not found: the held-out recordings live there")
    held_out = split_recordings(find_recordings(data))[1]
    model = WhisperSegModel.load(args.model, quantize=not args.no_quantize)
    print(f"model {args.model} on {model.device}, {torch.get_num_threads()} threads")

    reports = {
        "whisperseg": evaluate(held_out_segmenter(model, args.num_trials), held_out, 0.01),
        "energy-threshold": evaluate(energy_with_floor, held_out, 0.01),
    }
    print(f"\n{'group':<24} {'segmenter':<18} {'segment F1':>10} {'frame F1':>9}")
    for name, report in reports.items():
        for group, scores in report.groups.items():
            print(
                f"{group:<24} {name:<18} {scores['segment_f1']:>10.3f} {scores['frame_f1']:>9.3f}"
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
    draw_segments(recording, predicted, Path(args.model).name, figure)
    print(f"figure: {figure} ({example.name})")
    print_mammal_like(model)
    if not args.skip_leave_one_out:
        print_leave_one_out(data, Path(args.recipe), args.leave_out or list(LEAVE_ONE_OUT))
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
