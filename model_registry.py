"""Which models exist and are ready, read from the models folder each time it is asked.

Every WhisperSeg model is a subfolder in the published Hugging Face layout: the
shipped one, pulled checkpoints and finetuned ones alike. A finetuned model's folder
also holds ``job.json`` (written by the finetune worker); such a folder is ready only
once that file says ``done``, so a model in training, failed or cancelled is never
offered for inference. The classical energy baseline is a built-in pseudo-model
without a folder. Loaded models are cached, least recently used evicted first.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from whisperseg import ct2
from whisperseg.model import WhisperSegModel, pick_device
from whisperseg.model_cache import ModelCache, folder_identity

log = logging.getLogger(__name__)

ENERGY_MODEL = "energy-threshold"
DEFAULT_MODEL = "whisperseg-tiny"
JOB_FILE = "job.json"
MAX_NAME_LENGTH = 64
# Job states that leave a folder behind but free its name for a new model.
FREE_STATES = ("failed", "cancelled")

_NAME_CHARACTERS = re.compile(r"[A-Za-z0-9._-]+")
# Device names Windows refuses as file names, whatever the extension.
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul"}
_WINDOWS_DEVICES |= {f"{port}{i}" for port in ("com", "lpt") for i in range(1, 10)}

ModelKind = Literal["whisperseg", "energy"]


class ModelNameError(ValueError):
    """A new model name that is unsafe as a folder name or already taken."""


class UnknownModelError(LookupError):
    """No ready model of that name."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    kind: ModelKind
    owner: str | None = None

    @property
    def can_finetune(self) -> bool:
        return self.kind == "whisperseg"


def read_job(folder: Path) -> dict | None:
    """A folder's ``job.json`` (None when there is none, {} when it cannot be read)."""
    try:
        job = json.loads((folder / JOB_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return job if isinstance(job, dict) else {}


def _is_ready(folder: Path, job: dict | None) -> bool:
    done = job is None or job.get("state") == "done"
    return done and (folder / "config.json").is_file()


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a model folder name, or None when it can."""
    if not name:
        return "a model name must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"a model name must be at most {MAX_NAME_LENGTH} characters"
    if not _NAME_CHARACTERS.fullmatch(name):
        return "a model name may only contain letters A-Z a-z, digits, '.', '_' and '-'"
    if name[0] in ".-" or name.endswith("."):
        return "a model name must not start with '.' or '-', nor end with '.'"
    if ".." in name:
        return "a model name must not contain '..'"
    if name == ENERGY_MODEL or name.split(".")[0].lower() in _WINDOWS_DEVICES:
        return f"{name!r} is a reserved name"
    return None


class ModelRegistry:
    """Lists, validates and lazily loads the models of one folder; safe to share across threads."""

    def __init__(self, models_dir: Path | str, max_loaded: int = 2, device: str | None = None):
        self.models_dir = Path(models_dir)
        self.device = device
        self._cache = ModelCache(max_loaded)

    def folders(self) -> list[Path]:
        """Candidate model folders; hidden ones are staging or retired copies."""
        if not self.models_dir.is_dir():
            return []
        return sorted(
            p for p in self.models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def list_ready(self) -> list[ModelInfo]:
        """Ready WhisperSeg models, the default first (what a frontend preselects) and the
        others by name, then the energy baseline (always ready)."""
        ready = []
        for folder in self.folders():
            job = read_job(folder)
            if _is_ready(folder, job):
                ready.append(ModelInfo(folder.name, "whisperseg", (job or {}).get("owner")))
        ready.sort(key=lambda info: info.name != DEFAULT_MODEL)  # stable: the rest by name
        return [*ready, ModelInfo(ENERGY_MODEL, "energy")]

    @property
    def default_model_name(self) -> str:
        names = [info.name for info in self.list_ready()]
        return DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]

    def validate_new_name(self, name: str) -> None:
        """Raise :class:`ModelNameError` unless ``name`` is safe and free for a new model.

        Names are compared ignoring case (folders collide on case-insensitive disks);
        only a failed or cancelled job's folder gives its name up.
        """
        problem = _name_problem(name)
        if problem:
            raise ModelNameError(problem)
        for folder in self.folders():
            if folder.name.casefold() != name.casefold():
                continue
            job = read_job(folder)
            if _is_ready(folder, job):
                raise ModelNameError(f"a model named {folder.name!r} already exists")
            state = (job or {}).get("state")
            if state not in FREE_STATES:
                raise ModelNameError(f"the name {folder.name!r} is in use ({state or 'a folder'})")

    def whisperseg_folder(self, name: str) -> Path:
        """The folder of a ready WhisperSeg model; :class:`UnknownModelError` otherwise."""
        folder = self.models_dir / name
        if _name_problem(name) is not None or not folder.is_dir():
            raise UnknownModelError(f"no WhisperSeg model named {name!r}")
        if not _is_ready(folder, read_job(folder)):
            raise UnknownModelError(f"model {name!r} is not ready")
        return folder

    def identity(self, name: str) -> tuple[int, int]:
        """Changes when a model's folder is replaced: keys cached models and kept predictions."""
        if name == ENERGY_MODEL:
            return (0, 0)
        try:
            return folder_identity(self.whisperseg_folder(name))
        except FileNotFoundError as exc:
            raise UnknownModelError(f"model {name!r} is not ready") from exc

    @property
    def loaded_names(self) -> list[str]:
        """Names of the models in memory, least recently used first."""
        return self._cache.names

    def load(self, name: str) -> WhisperSegModel:
        """The cached inference model, loaded on first use (once, however many ask at once).

        A folder replaced since it was loaded (same name, new weights) is loaded again.
        """
        folder = self.whisperseg_folder(name)
        return self._cache.get(name, self.identity(name), lambda: self._load(folder))

    def _load(self, folder: Path) -> WhisperSegModel:
        """int8 torch on the CPU; CTranslate2 on a GPU (its copy made now if missing).

        On this project's 2-core CPU, torch int8 decodes faster than CTranslate2 int8
        (real-time factor 0.090 against 0.103 for 3 trials, bench/segment_speed.py).
        """
        if ct2.available() and pick_device(self.device).type == "cuda":
            try:
                return WhisperSegModel.load(folder, self.device, backend="ct2")
            except Exception:
                log.warning("no CTranslate2 copy of %s: decoding with torch", folder, exc_info=True)
        return WhisperSegModel.load(folder, device=self.device, quantize=True)
