"""Durable little files and the timestamps stored in them."""

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


def write_json_atomic(path: Path, data: Any) -> None:
    """Readers see the old file or the new one, never a partial write; fsynced before rename."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
