"""Server settings and limits, from command-line flags or ``WHISPERSEG_*`` environment variables.

One pydantic-settings model is the single source of truth: the flag ``--audio-memory-budget-mb``
and the variable ``WHISPERSEG_AUDIO_MEMORY_BUDGET_MB`` are both derived from the field
``audio_memory_budget_mb`` (flags win over variables, variables over defaults). The fixed limits
that no operator needs to tune, but that requests are validated against, live here too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, CliSettingsSource, SettingsConfigDict

PROJECT_DIR = Path(__file__).resolve().parents[1]
ENV_PREFIX = "WHISPERSEG_"
# Short flags for long field names (the variable keeps the field's name).
FLAG_ALIASES = {"--broker": "--broker-url"}


class SettingsError(ValueError):
    """A flag or variable with a value its setting cannot take; the message names it."""


class ServerSettings(BaseSettings):
    """Everything an operator can tune; defaults suit one user on a local machine."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name="backend.py",
    )

    # Fixed limits: far beyond real requests, they bound the work one request can cause.
    MAX_SAMPLING_RATE: ClassVar[int] = 1_000_000
    MAX_VISUALIZATION_LENGTH: ClassVar[int] = 1_000_000
    MAX_SECONDS: ClassVar[float] = 1e9  # keeps sample indices far inside int64
    MAX_N_FFT: ClassVar[int] = 16384  # twice the largest default; bounds the work per column

    host: str = "127.0.0.1"
    port: int = 8050
    data_dir: Path = PROJECT_DIR / "data"
    models_dir: Path = PROJECT_DIR / "models"
    max_upload_mb: float = 4096.0  # an hour of 250 kHz 16-bit mono is 1.8 GB
    allow_private_urls: bool = False
    audio_memory_budget_mb: float = 2048.0
    idle_timeout_hours: float = 48.0
    max_spec_columns: int = 20_000
    max_clip_samples: int = 100_000_000
    url_fetch_max_bytes: int = 1024 * 1024 * 1024
    url_fetch_timeout_s: float = 60.0
    auth_tokens_file: Path | None = None
    max_loaded_models: int = 2
    finetune_max_steps: int = 150
    max_channels: int = 64  # channels per upload; each costs a spectrogram in the reply
    # Distributed mode (flag --broker or --broker-url): finetuning and segmentation jobs go to
    # Celery workers through this Redis broker (e.g. redis://127.0.0.1:6379/0).
    broker_url: str | None = None
    # How often the server looks for jobs whose worker's lease lapsed (distributed mode).
    lease_check_s: float = 5.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def audio_memory_budget_bytes(self) -> int:
        return int(self.audio_memory_budget_mb * 1024 * 1024)

    @classmethod
    def from_env(cls) -> ServerSettings:
        """Defaults overridden by ``WHISPERSEG_<FIELD>`` variables (for gunicorn)."""
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsError(_message(exc, lambda f: ENV_PREFIX + f.upper())) from None

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> ServerSettings:
        """Flags override environment variables, which override defaults."""
        args = [_unalias(arg) for arg in (sys.argv[1:] if argv is None else argv)]
        source = CliSettingsSource(cls)
        try:
            return cls(_cli_settings_source=source(args=args))
        except ValidationError as exc:
            raise SettingsError(_message(exc, lambda f: "--" + f.replace("_", "-"))) from None


def _unalias(arg: str) -> str:
    flag, equals, value = arg.partition("=")
    return FLAG_ALIASES.get(flag, flag) + equals + value


def _message(error: ValidationError, source_name: Callable[[str], str]) -> str:
    """One line per bad value, e.g. ``WHISPERSEG_PORT: Input should be a valid integer``."""
    return "; ".join(
        f"{source_name(str(item['loc'][0]))}: {item['msg']} (got {item.get('input')!r})"
        for item in error.errors()
    )
