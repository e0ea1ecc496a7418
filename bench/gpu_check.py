"""Every GPU path a user reaches, run and measured in one go, printed as one table.

Steps (each a group of rows; a failed check or an exception fails its row, the others run):

1. environment: device, torch / CUDA / CTranslate2 / transformers versions, the precision each
   backend chose (torch weights, training autocast, CTranslate2 compute type);
2. engine, for ``whisperseg-tiny`` and ``whisperseg-base``, torch and CTranslate2: held-out
   segment F1 per group (``whisperseg.evaluation``, as ``bench/model_quality.py`` scores it),
   which must equal the CPU figures of the model cards within 0.01; real-time factor on
   zebra finch song (``bench/segment_speed.py``) for 1 and 3 trials at the default batch and
   at the best batch of a sweep; and the registry's own segmenter (what ``/get-labels`` runs)
   on the same song, the reference for the HTTP figure;
3. server (``tests/support/live_server.LiveServer``: gunicorn on a free port, on the device):
   upload, a spectrogram tile, ``/get-labels`` on the song, a default finetuning job over HTTP
   on 45 s of labelled synthetic A/B/C song (wall time, validation, typed F1 on the unlabelled
   rest through ``/get-labels`` with the finetuned model);
4. two finetuning jobs submitted together (juvenile zebra finch R3625 and the song again: the
   second must wait), and a segmentation job (``POST /segmentation-jobs``, whisperseg-base,
   the juvenile recording) submitted while the second trains; every job must end ``done``,
   and the server log must hold no traceback and no out-of-memory error;
5. peak GPU memory of each step: ``torch.cuda.max_memory_allocated`` in this process, and
   the device's memory in use (pynvml, else nvidia-smi; the server's own process where the
   driver lists it, else the device's rise over this process's): CTranslate2 allocates
   outside torch. ``n/a`` without either.

Goals (on one H200; judged in the full GPU form only, listed always): whisperseg-tiny 3 trials
RTF <= 0.003 and whisperseg-base <= 0.006 (as served: CTranslate2, default batch); the default
finetuning job on 45 s of labels < 30 s; ``/get-labels`` over HTTP within 1.2x of the engine;
held-out F1 equal to the CPU's within 0.01. Exit status 1 when a check fails.

``--device cpu`` runs the same steps in a short form (CI: ``tests/bench/test_gpu_check.py``):
whisperseg-tiny only, the shortest held-out file (1 trial; its F1 is shown, not compared: the
CPU figures are whole groups'), 6 s of song, 8 s of labels and 3 s after them, 3 training
steps per job (``WHISPERSEG_FINETUNE_MAX_STEPS``); the server is kept off any GPU. ``--short``
does the same on a GPU, a quick smoke run.

    python bench/gpu_check.py [--device cuda|cpu] [--short] [--out FILE.json]
        [--models whisperseg-tiny,whisperseg-base] [--models-dir DIR] [--pack-data DIR]

On the device machine (python3 3.12 with torch 2.11+cu130, transformers 5.17; nothing can be
fetched there) three things are missing and must be carried (64 MiB a call, tree included):

- the packages (60 MB of cp312 wheels; ctranslate2 is 43 MB of it), fetched here::

    echo /.whl/ >> .git/info/exclude; python3 -m pip download --no-deps --only-binary=:all: \
      --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl ctranslate2==4.8.5 transformers==5.24.0 \
      librosa==0.11.0 soundfile==0.14.0 soxr==1.1.0 audioread==3.1.0 pooch==1.9.0 \
      decorator==5.2.1 cffi==2.0.0 pycparser==3.0 flask==3.1.3 flask-cors==6.0.2 blinker==1.9.0 \
      itsdangerous==2.2.0 Werkzeug==3.1.8 gunicorn==27.0.1 pydantic==2.13.4 \
      pydantic_core==2.46.4 pydantic-settings==2.14.1 python-dotenv==1.2.2 \
      annotated-types==0.7.0 typing-inspection==0.4.2

- the recordings (``../shared`` does not travel; 43 MB)::

    echo /.gpucheck-data/ >> .git/info/exclude; python bench/gpu_check.py --pack-data .gpucheck-data

- the models: today they are tracked (129 MB), so the tree alone is over the limit; they must
  leave the tree that travels and go in pieces (tiny 35 MB; base's shards 39, 40, 13 MB) into an
  ignored folder, read with ``--models-dir``. Pieces sent on earlier calls stay on the machine
  while it is warm (30 s after each call).

The run itself (carry ``.whl``, ``.gpucheck-data`` and the models folder; timeout_s 600; about
4-5 minutes expected)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; set -o pipefail;
    nvidia-smi; export PYTHONUNBUFFERED=1 WHISPERSEG_SHARED_DATA=$PWD/.gpucheck-data;
    python3 bench/gpu_check.py --models-dir .gpucheck-models --out $OUT/gpu_check.json 2>&1 \
      | tee $OUT/log

(with the models in the tree, drop ``--models-dir``.) The ctranslate2 4.8.5 wheel links
``libcublas.so.12`` while that image holds CUDA 13: its rows may fail there; the server then
decodes with torch, which the table shows too.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import requests
import torch
from transformers.utils import logging as transformers_logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.finetune_speed import juvenile_recording  # noqa: E402
from bench.segment_speed import post, real_song, upload  # noqa: E402
from example_audios.make_example_song import make_song  # noqa: E402
from inference.service import segmenter_for  # noqa: E402
from model_registry import ModelRegistry  # noqa: E402
from tests.support.live_server import LiveServer  # noqa: E402
from whisperseg import ct2  # noqa: E402
from whisperseg.datasets import (  # noqa: E402
    HELD_OUT,
    find_recordings,
    shared_data_dir,
    split_recordings,
)
from whisperseg.evaluation import evaluate, held_out_segmenter  # noqa: E402
from whisperseg.metrics import evaluate_files  # noqa: E402
from whisperseg.model import WhisperSegModel, inference_dtype  # noqa: E402
from whisperseg.segment import Segment  # noqa: E402
from whisperseg.segmentation import (  # noqa: E402
    SPECIES_DEFAULTS,
    _default_batch_size,
    segment_recording,
)

PROJECT = Path(__file__).resolve().parents[1]
MODELS = ("whisperseg-tiny", "whisperseg-base")
# Held-out segment F1 at 10 ms, torch int8 on the CPU as served: the "How good it is" tables
# of models/whisperseg-tiny/README.md and models/whisperseg-base/README.md (2026-11-30).
CPU_HELD_OUT_F1 = {
    "whisperseg-tiny": {
        "adults_g4p5U": 0.996,
        "juveniles_R3625": 0.983,
        "canary_llb16_1612": 0.978,
        "bengalese_bird0_100-134": 0.995,
        "mouse_rec8": 0.769,
    },
    "whisperseg-base": {
        "adults_g4p5U": 0.996,
        "juveniles_R3625": 0.988,
        "canary_llb16_1612": 0.982,
        "bengalese_bird0_100-134": 0.997,
        "mouse_rec8": 0.857,
    },
}
F1_TOLERANCE = 0.01
RTF_GOALS = {"whisperseg-tiny": 0.003, "whisperseg-base": 0.006}  # 3 trials, as served
JOB_GOAL_S = 30.0
HTTP_GOAL_RATIO = 1.2
# README "Measured figures" (default job on 45 s of labels, 2-core CPU): F1 on the rest.
CPU_JOB_F1 = {"song": 1.000, "juvenile": 0.995}
LOG_PROBLEMS = ("Traceback", "out of memory", "CUDA error", "CUBLAS_STATUS")


@dataclass(frozen=True)
class Plan:
    """What one run does: the GPU form or the CPU short form."""

    device: str
    short: bool
    models: tuple[str, ...]
    groups: tuple[str, ...]
    song_seconds: float
    batch_sizes: tuple[int, ...]
    labelled_seconds: float
    finetune_steps: int | None  # None: the server's default
    job_timeout_s: float
    held_out_trials: int = 3
    max_files: int | None = None  # per run; whole groups (None) are compared with the CPU's
    models_dir: Path = PROJECT / "models"
    rest_seconds: float | None = None  # unlabelled audio after the labels (None: as long)

    @classmethod
    def make(cls, device: str, short: bool, models: tuple[str, ...] | None) -> Plan:
        if short:
            models = models or MODELS[:1]
            short_run = (("adults_g4p5U",), 6.0, (4, 16), 8.0, 3, 300.0, 1, 1)
            return cls(device, True, models, *short_run, rest_seconds=3.0)
        models = models or MODELS
        return cls(device, False, models, tuple(HELD_OUT), 60.0, (16, 32, 64, 128), 45.0, None, 600)

    @property
    def gpu(self) -> bool:
        return torch.device(self.device).type == "cuda"


@dataclass
class Row:
    step: str
    what: str
    figure: str
    goal: str = ""
    result: str = "ok"  # ok (ran), pass / fail (judged), error (raised), n/a
    memory: str = ""
    values: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.result in ("fail", "error")


class Table:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.rows: list[Row] = []

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.step} | {row.what} | {row.figure} | {row.result}", flush=True)
        return row

    def judge(self, ok: bool) -> str:
        """pass / fail where a goal is judged (the full GPU form); n/a otherwise."""
        if not self.plan.gpu or self.plan.short:
            return "n/a"
        return "pass" if ok else "fail"

    @contextmanager
    def step(self, step: str, what: str) -> Iterator[None]:
        """A row saying how a step raised, if it does; the run goes on."""
        try:
            yield
        except Exception as exc:
            traceback.print_exc()
            self.add(Row(step, what, f"{type(exc).__name__}: {exc}"[:300], result="error"))

    def render(self) -> str:
        head = ("step", "what", "figure", "goal", "result", "peak GPU memory")
        cells = [head] + [
            (r.step, r.what, r.figure, r.goal, r.result, r.memory or "") for r in self.rows
        ]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        lines = [
            "| " + " | ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) + " |"
            for cell in cells
        ]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)


# --- GPU memory ------------------------------------------------------------------------------


class GpuMemory:
    """Memory in use on GPU 0, in MB: the whole device and per process (pynvml, else nvidia-smi)."""

    def __init__(self) -> None:
        self.source: str | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml, self._handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
            self.source = "pynvml"
        except Exception:
            if shutil.which("nvidia-smi"):
                self.source = "nvidia-smi"

    def read(self) -> tuple[float, dict[int, float]] | None:
        """(device MB in use, {pid: MB}); per process may be empty (a sandbox hides pids)."""
        try:
            if self.source == "pynvml":
                used = self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
            elif self.source == "nvidia-smi":
                used = float(_smi("--query-gpu=memory.used")[0])
            else:
                return None
        except Exception:
            return None
        per_process: dict[int, float] = {}
        try:
            if self.source == "pynvml":
                for process in self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle):
                    per_process[process.pid] = (process.usedGpuMemory or 0) / 2**20
            else:
                for line in _smi("--query-compute-apps=pid,used_memory"):
                    pid, mb = (part.strip() for part in line.split(","))
                    per_process[int(pid)] = float(mb)
        except Exception:
            pass  # the device figure stands alone
        return used, per_process


def _smi(query: str) -> list[str]:
    out = subprocess.run(
        ["nvidia-smi", query, "--format=csv,noheader,nounits", "-i", "0"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


class MemoryMeter:
    """Peaks over one step: torch's allocations here, the device's and one process's use."""

    def __init__(self, gpu: GpuMemory | None, enabled: bool, pid: int | None = None):
        self.gpu, self.enabled, self.pid = gpu, enabled, pid
        self.device_peak = self.process_peak = self.baseline = None
        self.torch_peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MemoryMeter:
        if not self.enabled:
            return self
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        first = self.gpu.read() if self.gpu and self.gpu.source else None
        if first is not None:
            self.baseline = first[0]
            self._note(first)
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _note(self, reading: tuple[float, dict[int, float]]) -> None:
        used, per_process = reading
        self.device_peak = max(self.device_peak or 0.0, used)
        if self.pid in per_process:
            self.process_peak = max(self.process_peak or 0.0, per_process[self.pid])

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            reading = self.gpu.read()
            if reading is not None:
                self._note(reading)

    def __exit__(self, *exc_info: object) -> None:
        if not self.enabled:
            return
        torch.cuda.synchronize()
        self.torch_peak_mb = torch.cuda.max_memory_allocated() / 2**20
        self._stop.set()
        if self._thread:
            self._thread.join()
            reading = self.gpu.read()
            if reading is not None:
                self._note(reading)

    def in_process(self) -> str:
        if not self.enabled:
            return "n/a"
        device = "n/a" if self.device_peak is None else f"{self.device_peak:,.0f} MB"
        return f"torch {self.torch_peak_mb:,.0f} MB, device {device}"

    def server(self) -> str:
        if not self.enabled:
            return "n/a"
        if self.process_peak is not None:
            return f"server process {self.process_peak:,.0f} MB"
        if self.device_peak is not None and self.baseline is not None:
            rise = self.device_peak - self.baseline
            return f"device {self.device_peak:,.0f} MB (server ~{rise:,.0f})"
        return "n/a (no pynvml, no nvidia-smi)"

    def values(self) -> dict:
        return {
            "torch_peak_mb": self.torch_peak_mb,
            "device_peak_mb": self.device_peak,
            "process_peak_mb": self.process_peak,
        }


# --- steps -----------------------------------------------------------------------------------


def version(module: str) -> str:
    if importlib.util.find_spec(module) is None:
        return "not installed"
    return str(getattr(__import__(module), "__version__", "?"))


def environment(table: Table, plan: Plan) -> None:
    device = torch.device(plan.device)
    if plan.gpu:
        name = torch.cuda.get_device_name(device)
        props = torch.cuda.get_device_properties(device)
        name += f" (sm {props.major}{props.minor}, {props.total_memory / 2**30:.0f} GiB)"
    else:
        name = platform.processor() or platform.machine()
        name += f", {torch.get_num_threads()} torch threads"
    cuda = torch.version.cuda or "none"
    table.add(Row("environment", "device", name, values={"device": name}))
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": cuda,
        "ctranslate2": version("ctranslate2"),
        "transformers": version("transformers"),
    }
    figure = ", ".join(f"{k} {v}" for k, v in versions.items())
    table.add(Row("environment", "versions", figure, values=versions))
    half = str(inference_dtype(device)).removeprefix("torch.")
    training = f"{half} autocast, fp32 weights" if plan.gpu else "fp32, no autocast"
    torch_inference = half if plan.gpu else "int8 dynamic (as served)"
    ct2_type = ct2.compute_type(device) if ct2.available() else "n/a"
    if ct2.available() and plan.gpu:
        import ctranslate2

        supported = sorted(ctranslate2.get_supported_compute_types("cuda"))
        ct2_type += f" (device supports {', '.join(supported)})"
    figure = f"torch inference {torch_inference}; training {training}; CTranslate2 {ct2_type}"
    ok = ct2.available()
    table.add(
        Row(
            "environment",
            "precision chosen",
            figure,
            goal="CTranslate2 installed",
            result="ok" if ok else "fail",
            values={"torch_inference": torch_inference, "training": training, "ct2": ct2_type},
        )
    )


def held_out_files(groups: tuple[str, ...], max_files: int | None) -> list[Path]:
    """The held-out files of ``groups``; the ``max_files`` shortest where set."""
    data = shared_data_dir()
    if data is None:
        raise SystemExit("no recordings: ../shared/data absent and WHISPERSEG_SHARED_DATA unset")
    held_out = split_recordings(find_recordings(data))[1]
    files = [p for p in held_out if any(HELD_OUT[g] in p.name for g in groups)]
    if not files:
        raise SystemExit(f"no held-out files of {groups} under {data}")
    return sorted(files, key=lambda p: p.stat().st_size)[:max_files] if max_files else files


def load(name: str, plan: Plan, backend: str) -> WhisperSegModel:
    """As served: int8 torch on the CPU, half precision on a GPU; CTranslate2 converted first."""
    folder = plan.models_dir / name
    return WhisperSegModel.load(folder, plan.device, quantize=not plan.gpu, backend=backend)


def engine(table: Table, plan: Plan, gpu: GpuMemory | None, song: tuple) -> dict[str, float]:
    """Held-out F1 and RTF of each model and backend; returns registry segmenting times."""
    files = held_out_files(plan.groups, plan.max_files)
    audio, sr = song
    seconds = len(audio) / sr
    engine_times: dict[str, float] = {}
    for name in plan.models:
        for backend in ("torch", "ct2"):
            step = f"engine {name.removeprefix('whisperseg-')} {backend}"
            model = None
            with table.step(step, "load"):
                meter = MemoryMeter(gpu, plan.gpu)
                with meter:
                    started = time.perf_counter()
                    model = load(name, plan, backend)
                    load_s = time.perf_counter() - started
                    trials = plan.held_out_trials
                    report = evaluate(held_out_segmenter(model, trials), files, 0.01)
                dtype = str(next(model.network.parameters()).dtype).removeprefix("torch.")
                kind = (
                    f"CTranslate2 {model.fast_decoder.model.compute_type}"
                    if model.fast_decoder
                    else f"torch {dtype}{' int8' if not plan.gpu else ''}"
                )
                table.add(
                    Row(
                        step,
                        "load",
                        f"{load_s:.1f} s, decodes with {kind}",
                        values={"load_s": load_s},
                    )
                )
                for group, scores in report.groups.items():
                    f1, reference = scores["segment_f1"], CPU_HELD_OUT_F1[name][group]
                    whole = plan.max_files is None  # the CPU figure is the whole group's
                    ok = abs(f1 - reference) <= F1_TOLERANCE
                    table.add(
                        Row(
                            step,
                            f"held-out F1 {group}" + ("" if whole else f", {len(files)} file"),
                            f"{f1:.3f}",
                            goal=f"CPU {reference:.3f} +- {F1_TOLERANCE}"
                            + ("" if whole else " (whole group only)"),
                            result=("pass" if ok else "fail") if whole else "ok",
                            memory=meter.in_process(),
                            values={"segment_f1": f1, "cpu_reference": reference},
                        )
                    )
                table.add(
                    Row(
                        step,
                        f"held-out RTF, {trials} trial{'s' * (trials > 1)}",
                        f"{report.real_time_factor:.4f} ({report.audio_seconds:.0f} s of audio)",
                        values={"rtf": report.real_time_factor},
                    )
                )
            if model is not None:
                with table.step(step, "real-time factor"):
                    real_time_factors(table, plan, gpu, step, name, backend, model, audio, sr)
            del model
            free_memory(plan)
        with table.step(f"engine {name.removeprefix('whisperseg-')}", "registry segmenter"):
            engine_times[name] = registry_time(table, plan, gpu, name, audio, sr, seconds)
    return engine_times


def real_time_factors(table, plan, gpu, step, name, backend, model, audio, sr) -> None:
    """RTF on the song for 1 and 3 trials at the default batch and at the best of a sweep."""
    seconds = len(audio) / sr
    zebra_finch = SPECIES_DEFAULTS["zebra_finch"]
    segment_recording(model, audio[: sr * 3], sr, zebra_finch)  # warm-up
    default = _default_batch_size(model.device)
    for trials in (1, 3):
        meter = MemoryMeter(gpu, plan.gpu)
        times: dict[int, float] = {}
        with meter:
            for batch in sorted({default, *plan.batch_sizes}):
                config = replace(zebra_finch, num_trials=trials, batch_size=batch)
                started = time.perf_counter()
                segment_recording(model, audio, sr, config)
                times[batch] = (time.perf_counter() - started) / seconds
        best = min(times, key=times.get)
        goal, result = "", "ok"
        if trials == 3 and backend == "ct2":
            limit = RTF_GOALS[name]
            goal = f"<= {limit} at the default batch (as served)"
            result = table.judge(times[default] <= limit)
        table.add(
            Row(
                step,
                f"RTF {trials} trial{'s' * (trials > 1)}, {seconds:.0f} s song",
                f"default batch {default}: {times[default]:.4f}; best batch {best}: "
                f"{times[best]:.4f}",
                goal=goal,
                result=result,
                memory=meter.in_process(),
                values={"rtf_by_batch": times, "default_batch": default, "best_batch": best},
            )
        )


def registry_time(table, plan, gpu, name, audio, sr, seconds) -> float:
    """What /get-labels runs, in this process: the registry's segmenter for the recording."""
    registry = ModelRegistry(plan.models_dir, device=plan.device)
    meter = MemoryMeter(gpu, plan.gpu)
    with meter:
        segmenter_for(registry, name, audio[: sr * 3], sr, None).segment(audio[: sr * 3], sr)
        started = time.perf_counter()
        segments = segmenter_for(registry, name, audio, sr, None).segment(audio, sr)
        elapsed = time.perf_counter() - started
    model = registry.load(name)
    kind = "CTranslate2" if model.fast_decoder else "torch"
    fell_back = plan.gpu and ct2.available() and model.fast_decoder is None
    table.add(
        Row(
            f"engine {name.removeprefix('whisperseg-')}",
            "registry segmenter (as /get-labels)",
            f"{kind}: {elapsed:.2f} s, RTF {elapsed / seconds:.4f}, {len(segments)} segments"
            + (" (CTranslate2 failed to load: see the log)" if fell_back else ""),
            goal="CTranslate2 on a GPU" if plan.gpu else "",
            result="fail" if fell_back else "ok",
            memory=meter.in_process(),
            values={"seconds": elapsed, "segments": len(segments), "backend": kind},
        )
    )
    del model, registry
    free_memory(plan)
    return elapsed


def free_memory(plan: Plan) -> None:
    gc.collect()
    if plan.gpu:
        torch.cuda.empty_cache()


# --- the server ------------------------------------------------------------------------------


def get(url: str, path: str) -> dict:
    reply = requests.get(url + path, timeout=60)
    reply.raise_for_status()
    return reply.json()


def labelled_request(audio_id: str, truth: list[Segment], labelled: float, name: str) -> dict:
    labels = [
        {
            "onset": s.onset,
            "offset": s.offset,
            "species": "bench-species",
            "individual": "bench-bird",
            "clustername": s.cluster,
        }
        for s in truth
        if s.offset <= labelled
    ]
    return {
        "audio_id": audio_id,
        "annotated_areas": [{"onset": 0.0, "offset": labelled}],
        "human_labels": labels,
        "new_model_name": name,
        "initial_model_name": "whisperseg-tiny",
    }


def rest_f1(url: str, recording: tuple, model: str, truth: list[Segment], labelled: float,
            typed: bool) -> tuple[float, str]:  # fmt: skip
    """Segment F1 on the unlabelled rest, uploaded alone and segmented with ``model`` (as
    ``bench/finetune_speed.py`` scores it), and how: seconds, segments found and labelled."""
    audio, sr = recording
    rest_id = upload(url, audio[round(labelled * sr) :], sr)
    started = time.perf_counter()
    labels = post(url, "/get-labels", {"audio_id": rest_id, "model_name": model})["labels"]
    elapsed = time.perf_counter() - started
    predicted = [Segment(x["onset"] + labelled, x["offset"] + labelled, x["clustername"])
                 for x in labels]  # fmt: skip
    rest = [s for s in truth if s.onset >= labelled]
    f1 = evaluate_files([(predicted, rest)], 0.01, match_cluster=typed)["segment_f1"]
    return f1, f"{elapsed:.2f} s, {len(predicted)} found, {len(rest)} labelled"


def wait_job(url: str, name: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = get(url, f"/training-jobs/{name}")
        if job["state"] not in ("queued", "training"):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {name} still {job['state']} after {timeout_s:.0f} s")
        time.sleep(0.2)


def validation_text(job: dict) -> str:
    v = job.get("validation") or {}
    if not v:
        return "no validation"
    return (
        f"validation {v['verdict']} (finetuned {v['finetuned_segment_f1']:.3f}, base "
        f"{v['base_segment_f1']:.3f}, energy {v['energy_segment_f1']:.3f})"
    )


class ServerCheck:
    """Steps 3 and 4 on one server process."""

    def __init__(self, table: Table, plan: Plan, gpu: GpuMemory | None, root: Path):
        self.table, self.plan, self.gpu, self.root = table, plan, gpu, root
        models = root / "models"
        models.mkdir(parents=True)
        for name in plan.models:
            (models / name).symlink_to(plan.models_dir / name, target_is_directory=True)
        env = {}
        if plan.finetune_steps:
            env["WHISPERSEG_FINETUNE_MAX_STEPS"] = str(plan.finetune_steps)
        if not plan.gpu:
            env["CUDA_VISIBLE_DEVICES"] = ""  # the short form stays on the CPU on any machine
        launcher = "gunicorn" if importlib.util.find_spec("gunicorn") else "python"
        self.server = LiveServer(root, env, launcher=launcher)
        self.pid: int | None = None

    def meter(self) -> MemoryMeter:
        return MemoryMeter(self.gpu, self.plan.gpu, self.pid)

    def row(self, what: str, figure: str, meter: MemoryMeter, **extra) -> Row:
        values = {**extra.pop("values", {}), **(meter.values() if self.plan.gpu else {})}
        return self.table.add(
            Row("server", what, figure, memory=meter.server(), values=values, **extra)
        )

    def run(self, song: tuple, engine_s: float | None) -> None:
        meter = self.meter()
        with meter:
            started = time.perf_counter()
            self.server.start()
            self.pid = self.server.serving_pid()
        self.row(f"start ({self.server.launcher})", f"{time.perf_counter() - started:.1f} s", meter)
        try:
            self._serve(song, engine_s)
        finally:
            self.server.stop()
            self._log_row()

    def _serve(self, song: tuple, engine_s: float | None) -> None:
        url, (audio, sr) = self.server.url, song
        seconds = len(audio) / sr
        with self.table.step("server", "upload"):
            meter = self.meter()
            with meter:
                started = time.perf_counter()
                song_id = upload(url, audio, sr)
                warm_id = upload(url, audio[: sr * 3], sr)
            self.row(
                f"upload {seconds:.0f} s + 3 s", f"{time.perf_counter() - started:.2f} s", meter
            )
        with self.table.step("server", "tile"):
            meter = self.meter()
            body = {
                "audio_id": song_id,
                "start_time": 5.0,
                "hop_length": 160,
                "num_spec_columns": 1000,
            }
            with meter:
                started = time.perf_counter()
                tile = post(url, "/get-audio-clip-spec", body)
            elapsed = time.perf_counter() - started
            ok = len(tile["spec"]) > 1000 and len(tile["freqs"]) == 300
            self.row(
                "spectrogram tile, 1000 columns",
                f"{elapsed * 1000:.0f} ms",
                meter,
                result="ok" if ok else "fail",
            )
        with self.table.step("server", "get-labels"):
            meter = self.meter()
            request = {"model_name": "whisperseg-tiny"}
            with meter:
                post(url, "/get-labels", {**request, "audio_id": warm_id})  # loads the model
                started = time.perf_counter()
                labels = post(url, "/get-labels", {**request, "audio_id": song_id})["labels"]
            elapsed = time.perf_counter() - started
            ratio = elapsed / engine_s if engine_s else None
            goal = f"<= {HTTP_GOAL_RATIO}x engine"
            result = self.table.judge(ratio is not None and ratio <= HTTP_GOAL_RATIO)
            versus = f", {ratio:.2f}x engine {engine_s:.2f} s" if ratio else ""
            self.row(
                f"/get-labels {seconds:.0f} s, whisperseg-tiny",
                f"{elapsed:.2f} s, RTF {elapsed / seconds:.4f}, {len(labels)} labels{versus}",
                meter,
                goal=goal,
                result=result if labels else "fail",
                values={"seconds": elapsed, "ratio": ratio},
            )
        with self.table.step("server", "finetuning job"):
            self._finetune_job()
        with self.table.step("server", "jobs together"):
            self._jobs_together()

    def _song(self, seed: int) -> tuple[str, tuple, list[Segment]]:
        labelled = self.plan.labelled_seconds
        song, truth = make_song(seed=seed, duration=labelled + (self.plan.rest_seconds or labelled))
        return upload(self.server.url, song, 32000), (song, 32000), truth

    def _juvenile(self) -> tuple[str, tuple, list[Segment]]:
        audio, sr, truth = juvenile_recording()
        if self.plan.short:
            keep = self.plan.labelled_seconds + (self.plan.rest_seconds or 0.0)
            audio, truth = audio[: round(keep * sr)], [s for s in truth if s.offset <= keep]
        return upload(self.server.url, audio, sr), (audio, sr), truth

    def _finetune_job(self) -> None:
        url, plan = self.server.url, self.plan
        labelled = plan.labelled_seconds
        audio_id, recording, truth = self._song(21)
        meter = self.meter()
        with meter:
            started = time.perf_counter()
            post(
                url, "/finetune-whisperseg", labelled_request(audio_id, truth, labelled, "gpu-song")
            )
            job = wait_job(url, "gpu-song", plan.job_timeout_s)
            wall = time.perf_counter() - started
        steps = plan.finetune_steps or "default"
        done = job["state"] == "done"
        self.row(
            f"finetuning job, {labelled:.0f} s of labels, {steps} steps",
            f"{job['state']} in {wall:.1f} s; {validation_text(job)}"
            + (f"; error {job['error']}" if job.get("error") else ""),
            meter,
            goal=f"done, < {JOB_GOAL_S:.0f} s",
            result=(self.table.judge(wall < JOB_GOAL_S) if done else "fail"),
            values={"wall_s": wall, "state": job["state"], "validation": job.get("validation")},
        )
        if not done:
            return
        meter = self.meter()
        with meter:
            f1, how = rest_f1(url, recording, "gpu-song", truth, labelled, typed=True)
        self.row(
            "/get-labels, finetuned model: typed F1 on the rest",
            f"{f1:.3f} ({how})",
            meter,
            goal=f"CPU {CPU_JOB_F1['song']:.3f} (info)",
            values={"segment_f1": f1},
        )

    def _jobs_together(self) -> None:
        """Two jobs at once (the second waits), then a segmentation job beside the second."""
        url, plan = self.server.url, self.plan
        labelled = plan.labelled_seconds
        juvenile_id, juvenile, juvenile_truth = self._juvenile()
        song_id_b, _, song_truth = self._song(22)
        names = ("gpu-juvenile", "gpu-song-2")
        meter = self.meter()
        states_b_while_a_trains: set[str] = set()
        segmentation: dict | None = None
        b_state_at_segmentation = None
        with meter:
            post(url, "/finetune-whisperseg", labelled_request(juvenile_id, juvenile_truth,
                                                               labelled, names[0]))  # fmt: skip
            post(url, "/finetune-whisperseg", labelled_request(song_id_b, song_truth,
                                                               labelled, names[1]))  # fmt: skip
            started = time.perf_counter()
            deadline = time.monotonic() + 2 * plan.job_timeout_s
            job_id = None
            while True:
                a, b = (get(url, f"/training-jobs/{n}") for n in names)
                if a["state"] == "training":
                    states_b_while_a_trains.add(b["state"])
                if job_id is None and b["state"] == "training":
                    body = {"audio_id": juvenile_id, "model_name": plan.models[-1]}
                    job_id = post(url, "/segmentation-jobs", body)["job_id"]
                    b_state_at_segmentation = get(url, f"/training-jobs/{names[1]}")["state"]
                if job_id is not None:
                    segmentation = get(url, f"/segmentation-jobs/{job_id}")
                finished = all(j["state"] not in ("queued", "training") for j in (a, b))
                if job_id is None and finished:
                    break  # the second job ended before it was seen training
                if finished and segmentation["state"] not in ("queued", "running"):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"jobs still running: {a['state']}, {b['state']}")
                time.sleep(0.2)
            wall = time.perf_counter() - started
        waited = states_b_while_a_trains == {"queued"}
        both_done = a["state"] == b["state"] == "done"
        self.row(
            "two finetuning jobs submitted together",
            f"{a['state']}, {b['state']} in {wall:.1f} s; second while first trained: "
            f"{'/'.join(sorted(states_b_while_a_trains)) or 'not seen'}",
            meter,
            goal="both done, the second waits",
            result="pass" if both_done and waited else "fail",
            values={"states": [a["state"], b["state"]], "waited": waited, "wall_s": wall},
        )
        seg_state = segmentation["state"] if segmentation else "not submitted"
        beside = b_state_at_segmentation == "training"
        labels = len(segmentation["labels"]) if segmentation else 0
        self.row(
            f"segmentation job ({plan.models[-1]}) beside training",
            f"{seg_state}, {labels} labels; submitted while the job was "
            f"{b_state_at_segmentation or 'n/a'}"
            + (
                f"; error {segmentation['error']}" if segmentation and segmentation["error"] else ""
            ),
            meter,
            goal="done, beside a training job",
            result="pass" if seg_state == "done" and labels and beside else "fail",
            values={"state": seg_state, "labels": labels, "beside_training": beside},
        )
        if a["state"] == "done":
            inner = self.meter()
            with inner:
                f1, how = rest_f1(url, juvenile, names[0], juvenile_truth, labelled, False)
            self.row(
                "/get-labels, finetuned juvenile: F1 on the rest",
                f"{f1:.3f} ({how}); {validation_text(a)}",
                inner,
                goal=f"CPU {CPU_JOB_F1['juvenile']:.3f} (info)",
                values={"segment_f1": f1},
            )

    def _log_row(self) -> None:
        log = (
            self.server.log_path.read_text(errors="replace")
            if self.server.log_path.exists()
            else ""
        )
        problems = [p for p in LOG_PROBLEMS if p in log]
        self.table.add(
            Row(
                "server",
                "server log",
                "clean" if not problems else "found: " + ", ".join(problems),
                goal="no traceback, no out of memory",
                result="pass" if not problems else "fail",
            )
        )
        if problems:
            print(log[-4000:], file=sys.stderr)


# --- the data pack ---------------------------------------------------------------------------


def pack_data(target: Path) -> None:
    """Copy the recordings this check reads into ``target`` (same layout as ../shared/data)."""
    data = shared_data_dir()
    if data is None:
        raise SystemExit("../shared/data not found")
    held_out = split_recordings(find_recordings(data))[1]
    adults = find_recordings(data / "zebra_finch" / "adults")  # the song for the RTF
    total = 0
    for wav in sorted(set(held_out) | set(adults)):
        for path in (wav, wav.with_suffix(".json")):
            destination = target / path.relative_to(data)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
            total += path.stat().st_size
    print(f"{len(set(held_out) | set(adults))} recordings, {total / 2**20:.1f} MiB in {target}")


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--short", action="store_true", help="the short form (default on a CPU)")
    parser.add_argument(
        "--models", default="", help="comma-separated (default: both; the short form: tiny)"
    )
    parser.add_argument("--out", help="also write the table as JSON here")
    parser.add_argument(
        "--models-dir", type=Path, default=PROJECT / "models", help="where the models are"
    )
    parser.add_argument("--pack-data", metavar="DIR", help="copy the recordings it needs, exit")
    args = parser.parse_args()
    if args.pack_data:
        pack_data(Path(args.pack_data))
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no GPU here (torch.cuda.is_available() is False): use --device cpu", file=sys.stderr)
        return 2
    models = tuple(m for m in args.models.split(",") if m)
    unknown = [m for m in models if m not in CPU_HELD_OUT_F1]
    if unknown:
        parser.error(f"unknown models {unknown}: choose from {', '.join(MODELS)}")
    plan = Plan.make(str(device), args.short or device.type != "cuda", models or None)
    plan = replace(plan, models_dir=args.models_dir.resolve())
    table = Table(plan)
    gpu = GpuMemory() if plan.gpu else None
    started = time.perf_counter()
    form = "short form" if plan.short else "full"
    print(f"gpu_check on {plan.device} ({form}); memory from {gpu.source if gpu else 'n/a'}")
    with table.step("environment", "versions"):
        environment(table, plan)
    song = real_song(plan.song_seconds)
    engine_times = engine(table, plan, gpu, song)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp, table.step("server", "run"):
        ServerCheck(table, plan, gpu, Path(tmp)).run(song, engine_times.get("whisperseg-tiny"))
    wall = time.perf_counter() - started
    failed = [r for r in table.rows if r.failed]
    print()
    print(table.render())
    verdict = f"{len(failed)} check(s) failed" if failed else "every check passed"
    print(f"\n{verdict}; wall time {wall:.0f} s ({form} on {plan.device})")
    if args.out:
        document = {
            "plan": asdict(plan),
            "wall_s": wall,
            "ok": not failed,
            "rows": [asdict(r) for r in table.rows],
        }
        Path(args.out).write_text(json.dumps(document, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    transformers_logging.disable_progress_bar()  # one bar per model load otherwise
    sys.exit(main())
