"""Swap a finished folder into place, so readers see the old folder or the new one, whole."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path


def replace_folder(staging: Path, folder: Path) -> None:
    """Move a finished ``staging`` folder to ``folder``, replacing any older one."""
    retired = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.old"
    if folder.exists():
        folder.rename(retired)
    staging.rename(folder)
    shutil.rmtree(retired, ignore_errors=True)
