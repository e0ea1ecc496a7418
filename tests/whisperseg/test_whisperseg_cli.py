"""``python -m whisperseg``: what a notebook or shell user runs without the server."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whisperseg.cli import main
from whisperseg.hub import PullError, pull, resolve_repo

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    """``python -m whisperseg ARGS`` in this process (a new interpreter costs seconds of
    imports per test; ``test_every_command_has_help`` runs the real entry point). An exit
    message lands on stderr with status 1, as the interpreter would print it."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    if isinstance(code, str):
        code, err = 1, err + code + "\n"
    return CliResult(code or 0, out, err)


def test_every_command_has_help() -> None:
    for command in ["segment", "evaluate", "train", "convert", "pull"]:
        result = subprocess.run(
            [sys.executable, "-m", "whisperseg", command, "--help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert "usage: python -m whisperseg" in result.stdout


def test_train_says_which_recipe_to_run_first_when_its_start_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = json.loads((REPO / "configs" / "whisperseg-tiny.json").read_text())
    (tmp_path / "recipe.json").write_text(json.dumps({**recipe, "initial_model": "missing"}))
    recipe_file = str(tmp_path / "recipe.json")
    result = run_cli(capsys, "train", "--recipe", recipe_file, "--out", str(tmp_path))
    assert result.returncode != 0
    assert "train the recipe that makes it first" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_segment_writes_csv_and_json(
    tmp_path: Path, tiny_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "clip.wav", rng.normal(0, 0.1, 16000).astype(np.float32), 16000)
    base = ["segment", str(tmp_path / "clip.wav"), "--model", str(tmp_path / "tiny")]
    base += ["--spec-time-step", "0.001", "--num-trials", "1", "--device", "cpu"]

    result = run_cli(capsys, *base, "--out", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "out.csv") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == [
            "file",
            "onset",
            "offset",
            "species",
            "individual",
            "cluster",
            "confidence",
        ]
        rows = list(reader)
    assert all(0 <= float(r["onset"]) < float(r["offset"]) <= 1.0 for r in rows)

    result = run_cli(capsys, *base, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == len(rows)


def test_evaluate_scores_the_energy_baseline_on_real_recordings(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(
        capsys, "evaluate", "--model", "energy-threshold", "--data-dir", str(shared_data / "canary")
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    canary = report["groups"]["canary"]
    assert canary["segment_tp"] > 100
    assert 0.5 < canary["segment_f1"] <= 1.0
    assert set(report["groups"]) == {"canary", "canary_llb16_1612"}  # held-out file apart
    assert report["audio_seconds"] > 25


def test_pull_knows_the_published_names_and_refuses_others() -> None:
    assert resolve_repo("whisperseg-base-animal-vad") == (
        "nccratliri/whisperseg-base-animal-vad",
        "whisperseg-base-animal-vad",
    )
    assert resolve_repo("someone/my-model") == ("someone/my-model", "my-model")
    for bad in ["../etc", "a/b/c", "", "/x"]:
        with pytest.raises(PullError):
            resolve_repo(bad)


def test_pull_offline_fails_clearly_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PullError, match="could not download nccratliri/whisperseg-animal-vad"):
        pull("whisperseg-animal-vad", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_pull_command_reports_the_error_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run_cli(capsys, "pull", "whisperseg-base-animal-vad", "--models-dir", str(tmp_path))
    assert result.returncode != 0
    assert "error: could not download" in result.stderr
    assert "Traceback" not in result.stderr
