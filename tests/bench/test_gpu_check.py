"""bench/gpu_check.py in its CPU short form: every step runs and passes, the table is whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT, SHIPPED_MODEL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHIPPED_MODEL.is_dir(), reason="shipped model missing"),
]

# (step, start of "what") of the rows every run has; the GPU form adds the base model's.
EXPECTED_ROWS = [
    ("environment", "device"),
    ("environment", "versions"),
    ("environment", "precision chosen"),
    *[
        (f"engine tiny {backend}", what)
        for backend in ("torch", "ct2")
        for what in (
            "load",
            "held-out F1 adults_g4p5U",
            "held-out RTF",
            "RTF 1 trial",
            "RTF 3 trials",
        )
    ],
    ("engine tiny", "registry segmenter"),
    ("server", "start"),
    ("server", "upload"),
    ("server", "spectrogram tile"),
    ("server", "/get-labels 6 s, whisperseg-tiny"),
    ("server", "finetuning job"),
    ("server", "/get-labels, finetuned model"),
    ("server", "two finetuning jobs submitted together"),
    ("server", "segmentation job (whisperseg-tiny) beside training"),
    ("server", "/get-labels, finetuned juvenile"),
    ("server", "server log"),
]


def test_the_short_form_runs_every_step_on_the_cpu(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--device", "cpu", "--out", str(out)],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "every check passed" in done.stdout and "| step" in done.stdout

    report = json.loads(out.read_text())
    rows = report["rows"]
    assert report["ok"] and report["plan"]["short"] and report["plan"]["device"] == "cpu"
    assert [r for r in rows if r["result"] in ("fail", "error")] == []
    for step, what in EXPECTED_ROWS:
        assert any(r["step"] == step and r["what"].startswith(what) for r in rows), (step, what)
    jobs = next(r for r in rows if r["what"] == "two finetuning jobs submitted together")
    assert jobs["values"]["states"] == ["done", "done"] and jobs["values"]["waited"]
