"""Durable little files and the timestamps stored in them: a reader sees the old file or the
new one, never a partial write."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def utc_timestamp() -> str:
    """Now as ISO 8601 UTC with microseconds: sorts in time order, distinct per event."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def write_text_atomic(path: Path, text: str, make_parents: bool = False) -> None:
    """Write ``text`` to ``path`` through a hidden temporary file, fsynced before the rename."""
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2))
