"""``python -m whisperseg segment|segment-corpus|evaluate|train|convert|pull``: the engine
without a server."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from whisperseg.corpus import CorpusFile


def _train(args: argparse.Namespace) -> None:
    from whisperseg.recipe import Recipe, run_recipe

    recipe = Recipe.load(args.recipe)
    if args.data_dir:
        recipe = replace(recipe, data_dir=str(Path(args.data_dir).resolve()))
    if args.max_steps:
        recipe = replace(recipe, training=replace(recipe.training, max_steps=args.max_steps))
    with tqdm(total=recipe.training.max_steps, desc="training", unit="step") as bar:

        def report(p):
            bar.update(1)
            bar.set_postfix(loss=f"{p.loss:.3f}")

        try:
            summary = run_recipe(recipe, Path(args.out), progress=report)
        except FileNotFoundError as error:
            sys.exit(f"error: {error}")
    print(json.dumps(summary, indent=2))


def _convert(args: argparse.Namespace) -> None:
    from whisperseg.conversion import bundled_whisper_dir, convert_ctranslate2_whisper

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(args.ct2_dir or bundled_whisper_dir(args.whisper, Path(scratch)))
        out = convert_ctranslate2_whisper(source, Path(args.out))
    if args.whisperseg:
        from whisperseg.initialize import from_whisper

        from_whisper(out).save(out)
    print(out)


def _overrides(args: argparse.Namespace) -> dict:
    return {
        "spec_time_step": args.spec_time_step,
        "min_frequency": args.min_frequency,
        "num_trials": args.num_trials,
        "sr": args.sr,
    }


def _segment(args: argparse.Namespace) -> None:
    from whisperseg.files import (
        load_model,
        rows_text,
        segment_file,
        segment_rows,
        segmentation_config,
    )

    model = load_model(args.model, args.device, args.backend)
    config = segmentation_config(model, args.species, _overrides(args))
    rows = []
    for path in args.audio:
        with tqdm(total=1.0, desc=Path(path).name, unit="file", bar_format="{l_bar}{bar}") as bar:

            def report(fraction: float, bar=bar) -> None:
                bar.n = fraction
                bar.refresh()

            segments, _ = segment_file(model, path, config, args.species, report)
        rows += segment_rows(str(path), segments)
    _write(rows_text(rows, args.format), args.out)


def corpus_template(args: argparse.Namespace) -> CorpusFile:
    """The corpus run the arguments of :func:`corpus_arguments` describe."""
    from whisperseg.corpus import CorpusFile

    return CorpusFile(
        root=str(Path(args.corpus).resolve()),
        relative="",
        out=str(Path(args.out).resolve()),
        model=str(Path(args.model).resolve()),
        format=args.format,
        species=args.species,
        overrides=_overrides(args),
    )


def _segment_corpus(args: argparse.Namespace) -> None:
    from functools import partial

    from whisperseg.corpus import segment_corpus, segment_here

    summary = segment_corpus(corpus_template(args), partial(segment_here, device=args.device))
    print(summary.text())
    if summary.failed:
        sys.exit(1)


def _evaluate(args: argparse.Namespace) -> None:
    from whisperseg.datasets import find_recordings, split_recordings
    from whisperseg.energy import energy_segments
    from whisperseg.evaluation import evaluate, whisperseg_segmenter

    paths = find_recordings(args.data_dir)
    if args.held_out:
        paths = split_recordings(paths)[1]
    if args.model == "energy-threshold":

        def segmenter(recording):
            return energy_segments(recording.audio, recording.sr)
    else:
        from whisperseg.files import load_model

        segmenter = whisperseg_segmenter(load_model(args.model, args.device), args.num_trials)
    with tqdm(total=len(paths), desc="evaluating", unit="file") as bar:
        report = evaluate(segmenter, paths, args.tolerance, progress=lambda _: bar.update(1))
    result = {**asdict(report), "real_time_factor": report.real_time_factor}
    _write(json.dumps(result, indent=2), args.out)


def _pull(args: argparse.Namespace) -> None:
    from whisperseg.hub import PullError, pull

    try:
        print(pull(args.name, Path(args.models_dir)))
    except PullError as error:
        sys.exit(f"error: {error}")


def _write(text: str, out: str | None) -> None:
    if out:
        Path(out).write_text(text)
    else:
        print(text)


def _segmentation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--species", help="species defaults to use (e.g. zebra_finch, mouse)")
    parser.add_argument("--spec-time-step", type=float, help="seconds per spectrogram column")
    parser.add_argument("--min-frequency", type=float)
    parser.add_argument("--sr", type=int, help="resample to this rate first")
    parser.add_argument("--num-trials", type=int)
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: GPU if present)")


def corpus_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a corpus run, here or on workers."""
    parser.add_argument("corpus", help="folder of recordings (searched recursively)")
    _segmentation_options(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", choices=["csv", "raven", "json"], default="csv")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m whisperseg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model from a JSON recipe")
    train.add_argument(
        "--recipe", required=True, help="recipe file, e.g. configs/whisperseg-tiny.json"
    )
    train.add_argument("--out", required=True, help="model folder to write")
    train.add_argument("--data-dir", help="annotated recordings (overrides the recipe)")
    train.add_argument("--max-steps", type=int, help="override the recipe's step count")
    train.set_defaults(run=_train)

    convert = commands.add_parser("convert", help="CTranslate2 Whisper -> Hugging Face folder")
    convert.add_argument("--out", required=True)
    convert.add_argument("--ct2-dir", help="CTranslate2 Whisper folder (default: a bundled one)")
    convert.add_argument(
        "--whisper", default="tiny.en", help="which bundled Whisper: tiny.en (default) or base"
    )
    convert.add_argument(
        "--whisperseg",
        action="store_true",
        help="also make it a compact-vocabulary WhisperSeg model",
    )
    convert.set_defaults(run=_convert)

    segment = commands.add_parser("segment", help="segment recordings, write CSV or JSON")
    segment.add_argument("audio", nargs="+", help="audio files (WAV, MP3, FLAC, OGG)")
    _segmentation_options(segment)
    segment.add_argument("--format", choices=["csv", "json"], default="csv")
    segment.add_argument("--out", help="output file (default: standard output)")
    segment.add_argument(
        "--backend",
        choices=["auto", "torch", "ct2"],
        default="auto",
        help="decoder: auto = CTranslate2 when the model has a converted copy, else torch; "
        "ct2 converts the model first if needed",
    )
    segment.set_defaults(run=_segment)

    corpus = commands.add_parser(
        "segment-corpus",
        help="segment every recording of a folder, one output each; resumable",
        description="One output per recording under OUT (a/b.wav -> OUT/a/b.csv); files "
        "whose output exists are skipped, so an interrupted run resumes where it stopped. "
        "On Celery workers: python -m distributed segment-corpus ... --broker URL.",
    )
    corpus_arguments(corpus)
    corpus.set_defaults(run=_segment_corpus)

    evaluate = commands.add_parser("evaluate", help="segment F1 and frame F1 on annotated data")
    evaluate.add_argument("--model", required=True, help="model folder or energy-threshold")
    evaluate.add_argument("--data-dir", required=True, help="folder of NAME.wav + NAME.json")
    evaluate.add_argument("--held-out", action="store_true", help="only the fixed held-out files")
    evaluate.add_argument("--tolerance", type=float, help="seconds (default: each file's own)")
    evaluate.add_argument("--num-trials", type=int, default=3)
    evaluate.add_argument("--out", help="output JSON file (default: standard output)")
    evaluate.add_argument("--device")
    evaluate.set_defaults(run=_evaluate)

    pull = commands.add_parser("pull", help="download a published checkpoint (needs internet)")
    pull.add_argument(
        "name", help="whisperseg-base-animal-vad, whisperseg-animal-vad or owner/repo"
    )
    pull.add_argument("--models-dir", default="models")
    pull.set_defaults(run=_pull)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
