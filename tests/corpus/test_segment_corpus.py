"""``python -m whisperseg segment-corpus`` (here) and ``python -m distributed segment-corpus``
(on Celery workers): one output per recording, resumable, the same segments as ``segment``
gives each file alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from conftest import SHIPPED_MODEL

from example_audios.make_example_song import make_song
from tests.support.local_cluster import PROJECT, Process, Workers, wait_until
from whisperseg.cli import main

pytestmark = pytest.mark.skipif(
    not SHIPPED_MODEL.is_dir(), reason=f"shipped model missing at {SHIPPED_MODEL}"
)
FAST = ["--num-trials", "1", "--device", "cpu"]


def make_corpus(root: Path, count: int, seconds: float) -> list[str]:
    """``count`` songs, half of them in a subfolder; their paths relative to ``root``."""
    names = []
    for index in range(count):
        name = f"{'night/' if index % 2 else ''}song{index:02d}.wav"
        audio, _ = make_song(seed=index, duration=seconds)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / name, audio, 32000)
        names.append(name)
    return names


def corpus_command(root: Path, out: Path, fmt: str, *extra: str) -> list[str]:
    return ["segment-corpus", str(root), "--model", str(SHIPPED_MODEL), "--out", str(out),
            "--format", fmt, *FAST, *extra]  # fmt: skip


def alone(root: Path, relative: str, fmt: str, tmp_path: Path, monkeypatch) -> str:
    """What ``segment`` writes for that one file, run from the corpus folder."""
    monkeypatch.chdir(root)
    out = tmp_path / "alone.out"
    main(["segment", relative, "--model", str(SHIPPED_MODEL), "--format", fmt, "--out", str(out),
          *FAST])  # fmt: skip
    return out.read_text()


@pytest.mark.slow
def test_a_corpus_gives_what_each_file_gives_alone_and_skips_what_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    root, out = tmp_path / "corpus", tmp_path / "out"
    names = make_corpus(root, 3, seconds=4.0)
    (root / ".hidden").mkdir()
    sf.write(root / ".hidden" / "skip.wav", make_song(seed=9, duration=1.0)[0], 32000)

    assert main(corpus_command(root, out, "csv")) == 0
    summary = capsys.readouterr().out
    assert "3 files segmented" in summary and "0 skipped" in summary and "0 failed" in summary
    outputs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert outputs == sorted(n.replace(".wav", ".csv") for n in names)
    for name in names:
        expected = alone(root, name, "csv", tmp_path, monkeypatch)
        assert (out / name.replace(".wav", ".csv")).read_text() == expected
        assert expected.count("\n") > 2  # the song has calls

    (out / names[1].replace(".wav", ".csv")).unlink()
    assert main(corpus_command(root, out, "csv")) == 0
    assert "1 files segmented" in capsys.readouterr().out.replace("2 skipped", "")

    assert main(corpus_command(root, tmp_path / "raven", "raven")) == 0
    table = (tmp_path / "raven" / "song00.selections.txt").read_text().splitlines()
    csv_rows = (out / "song00.csv").read_text().splitlines()[1:]
    assert table[0].startswith("Selection\tView\tChannel\tBegin Time (s)")
    assert len(table) - 1 == len(csv_rows)
    assert [float(r.split("\t")[3]) for r in table[1:]] == [
        float(r.split(",")[1]) for r in csv_rows
    ]


@pytest.mark.slow
def test_a_corpus_run_on_workers_interrupted_then_resumed(
    tmp_path: Path, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, out = tmp_path / "corpus", tmp_path / "out"
    names = make_corpus(root, 12, seconds=15.0)
    workers.start(1)
    command = [sys.executable, "-m", "distributed"]
    command += corpus_command(root, out, "json", "--broker", workers.broker_url)
    first = Process(command, tmp_path / "first-run.log", env={"OMP_NUM_THREADS": "1"})
    try:
        wait_until(lambda: len(list(out.rglob("*.json"))) >= 2, 300, "two files to be done")
    finally:
        first.kill()  # the client and its only worker, mid-run
        workers.stop_all()
    done_before = len(list(out.rglob("*.json")))
    assert 2 <= done_before < len(names)

    workers.start(1)
    resumed = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    summary = resumed.stdout.strip().splitlines()[-1]
    segmented, skipped = int(summary.split()[0]), int(summary.split("; ")[1].split()[0])
    assert skipped >= done_before and segmented + skipped == len(names), summary
    assert "ETA" in resumed.stderr or "<" in resumed.stderr  # the progress bar's estimate

    # with one torch thread, as the worker: int8 sums split over more threads differ in the
    # last bits, which can move a boundary by a few milliseconds
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.chdir(root)
    try:
        main(["segment", *names, "--model", str(SHIPPED_MODEL), "--format", "json",
              "--out", str(tmp_path / "alone.json"), *FAST])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    alone_rows = json.loads((tmp_path / "alone.json").read_text())
    for name in names:
        rows = json.loads((out / name.replace(".wav", ".json")).read_text())
        assert rows == [r for r in alone_rows if r["file"] == name], name
    assert sum(len(json.loads(p.read_text())) for p in out.rglob("*.json")) == len(alone_rows)
