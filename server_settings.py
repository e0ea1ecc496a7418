"""Server settings, from command-line flags or ``WHISPERSEG_*`` environment variables.

One dataclass is the single source of truth: the flag ``--audio-memory-budget-mb`` and the
variable ``WHISPERSEG_AUDIO_MEMORY_BUDGET_MB`` are both derived from the field
``audio_memory_budget_mb``, so flags, environment and defaults cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

PROJECT_DIR = Path(__file__).resolve().parent
ENV_PREFIX = "WHISPERSEG_"


@dataclass(frozen=True)
class ServerSettings:
    """Everything an operator can tune; defaults suit one user on a local machine."""

    host: str = "127.0.0.1"
    port: int = 8050
    data_dir: Path = PROJECT_DIR / "data"
    models_dir: Path = PROJECT_DIR / "models"
    max_upload_mb: float = 1024.0
    allow_private_urls: bool = False
    audio_memory_budget_mb: float = 2048.0
    idle_timeout_hours: float = 48.0
    max_spec_columns: int = 20_000
    max_clip_samples: int = 100_000_000
    url_fetch_max_bytes: int = 1024 * 1024 * 1024
    url_fetch_timeout_s: float = 60.0
    auth_tokens_file: Path | None = None
    max_loaded_models: int = 2
    finetune_max_steps: int = 200

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def audio_memory_budget_bytes(self) -> int:
        return int(self.audio_memory_budget_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Defaults overridden by ``WHISPERSEG_<FIELD>`` variables (for gunicorn)."""
        environ = os.environ if environ is None else environ
        values = {}
        for name, kind in _field_types().items():
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = _convert(kind, raw, f"{ENV_PREFIX}{name.upper()}")
        return cls(**values)

    @classmethod
    def from_args(
        cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> ServerSettings:
        """Flags override environment variables, which override defaults."""
        base = cls.from_env(environ)
        parser = argparse.ArgumentParser(description="WhisperSeg annotation server")
        for name, kind in _field_types().items():
            flag = "--" + name.replace("_", "-")
            help_text = f"default {getattr(base, name)!s}; env {ENV_PREFIX}{name.upper()}"
            if kind is bool:
                parser.add_argument(flag, action="store_true", default=None, help=help_text)
            else:
                parser.add_argument(flag, default=None, metavar=name.upper(), help=help_text)
        given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
        types = _field_types()
        try:
            values = {
                k: _convert(types[k], v, "--" + k.replace("_", "-")) for k, v in given.items()
            }
        except ValueError as exc:
            parser.error(str(exc))
        return dataclasses.replace(base, **values)


def _field_types() -> dict[str, Any]:
    hints = get_type_hints(ServerSettings)
    return {f.name: hints[f.name] for f in dataclasses.fields(ServerSettings)}


def _convert(kind: Any, raw: Any, source: str) -> Any:
    """Turn a flag or variable string into the field's type, with a message naming the source."""
    if raw is True:
        return True
    text = str(raw).strip()
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        if kind is Path:
            return Path(text)
        if kind == Path | None:
            return Path(text) if text else None
        return kind(text)
    except ValueError as exc:
        raise ValueError(f"{source}: invalid value {text!r}") from exc
