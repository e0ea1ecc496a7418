"""``python -m whisperseg segment|evaluate|train|convert|pull``: the engine without a server."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm


def _train(args: argparse.Namespace) -> None:
    from dataclasses import replace

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

        summary = run_recipe(recipe, Path(args.out), progress=report)
    print(json.dumps(summary, indent=2))


def _convert(args: argparse.Namespace) -> None:
    from whisperseg.conversion import bundled_tiny_en_dir, convert_ctranslate2_whisper

    source = Path(args.ct2_dir) if args.ct2_dir else bundled_tiny_en_dir()
    out = convert_ctranslate2_whisper(source, Path(args.out))
    if args.whisperseg:
        from whisperseg.initialize import from_whisper

        from_whisper(out).save(out)
    print(out)


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
    convert.add_argument("--ct2-dir", help="CTranslate2 Whisper folder (default: bundled tiny.en)")
    convert.add_argument(
        "--whisperseg",
        action="store_true",
        help="also make it a compact-vocabulary WhisperSeg model",
    )
    convert.set_defaults(run=_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
