"""Durable annotation versions in SQLite: every post is a new version, nothing is overwritten.

WAL journal with ``synchronous=FULL`` and a commit before returning, so an acknowledged post
survives a crash or power loss. One connection guarded by a lock is plenty for the write rate
of human annotators and keeps SQLite's threading rules simple.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from whisperseg.durable import utc_timestamp

SCHEMA = """
CREATE TABLE IF NOT EXISTS annotation_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash_id TEXT NOT NULL,
    version TEXT NOT NULL,
    annotations TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS annotation_versions_hash ON annotation_versions (hash_id, id);
CREATE TABLE IF NOT EXISTS annotation_time_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received TEXT NOT NULL,
    log TEXT NOT NULL
);
"""


class AnnotationStore:
    """Versions of annotation lists per ``hash_id`` (any string, including "" and "null")."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def add_version(self, hash_id: str, annotations: list[dict[str, Any]]) -> str:
        """Store a new version, committed to disk before returning its version string."""
        version = utc_timestamp()
        self._insert(
            "INSERT INTO annotation_versions (hash_id, version, annotations) VALUES (?, ?, ?)",
            (hash_id, version, json.dumps(annotations)),
        )
        return version

    def versions(self, hash_id: str) -> list[dict[str, Any]]:
        """All versions, oldest first: ``[{"version": iso-date, "annotations": [...]}, ...]``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT version, annotations FROM annotation_versions "
                "WHERE hash_id = ? ORDER BY id",
                (hash_id,),
            ).fetchall()
        return [{"version": v, "annotations": json.loads(a)} for v, a in rows]

    def latest(self, hash_id: str) -> list[dict[str, Any]] | None:
        """The newest version's annotations, or None if the hash has none."""
        with self._lock:
            row = self._db.execute(
                "SELECT annotations FROM annotation_versions WHERE hash_id = ? "
                "ORDER BY id DESC LIMIT 1",
                (hash_id,),
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def add_time_log(self, log: list[Any]) -> None:
        """Store an annotation-time log as received from the frontend."""
        self._insert(
            "INSERT INTO annotation_time_logs (received, log) VALUES (?, ?)",
            (utc_timestamp(), json.dumps(log)),
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _insert(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(sql, params)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
