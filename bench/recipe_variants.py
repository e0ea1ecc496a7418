"""Models trained by the shipped recipes with species left out, trained once and cached.

A base that never heard a species is what honest new-species and leave-one-out figures
need; each takes minutes of CPU to train, so it is kept in ``bench/.cache/`` (delete the
folder after changing a recipe).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from whisperseg.recipe import Recipe, run_recipe  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
SHIPPED_RECIPE = PROJECT / "configs" / "whisperseg-tiny.json"
FIRST_RECIPE = PROJECT / "configs" / "whisperseg-tiny-v1.json"


def trained(recipe: Recipe, name: str) -> Path:
    """The cached model ``name``, trained from ``recipe`` first if there is none."""
    folder = CACHE / name
    if not (folder / "config.json").is_file():
        print(f"training {name} into {folder} (once) ...", flush=True)
        run_recipe(recipe, folder)
    return folder


def leave_out(species: str, recipe_file: Path = SHIPPED_RECIPE) -> Path:
    """A recipe (the shipped one by default) without ``species``; its held-out files
    stay apart as well."""
    recipe = Recipe.load(recipe_file)
    recipe = replace(recipe, exclude_species=(*recipe.exclude_species, species))
    return trained(recipe, f"{Path(recipe_file).stem}-without-{species}")


def canary_free(steps: int) -> Path:
    """The first recipe on zebra finch only, ``steps`` long: a base that never heard a canary."""
    recipe = Recipe.load(FIRST_RECIPE)
    recipe = replace(
        recipe,
        exclude_species=(*recipe.exclude_species, "canary"),
        training=replace(recipe.training, max_steps=steps),
        segmentation_defaults={"zebra_finch": recipe.segmentation_defaults["zebra_finch"]},
    )
    return trained(recipe, f"whisperseg-tiny-no-canary-{steps}")
