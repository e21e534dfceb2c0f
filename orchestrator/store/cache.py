"""The run cache's entries on disk, shared by the cache plugin and ``orchestrator cache``.

One small SQLite file (WAL) under ``HOME/cache/``: a lookup is an indexed read and a store one
insert, a few microseconds each, and concurrent orchestrators on one home folder see whole
entries or none. The key itself is computed by the cache plugin; this module only stores and
lists entries (``orchestrator.views`` prints them).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["CacheEntry", "CacheStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, run_id TEXT NOT NULL, sweep_id TEXT NOT NULL, finished_at REAL NOT NULL,
    outputs TEXT NOT NULL, params TEXT NOT NULL
)
"""


class CacheEntry(msgspec.Struct, kw_only=True):
    key: str
    run_id: str
    sweep_id: str
    finished_at: float
    outputs: dict[str, Any] = {}
    params: dict[str, Any] = {}


class CacheStore:
    """The entries of one home folder (one connection per store, usable from any thread)."""

    def __init__(self, home: Path) -> None:
        self.path = home / "cache" / "entries.sqlite"
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._conn is None and not self.path.exists():
            return []
        with self._lock:
            return list(self._db().execute(sql, params))

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> CacheEntry:
        key, run_id, sweep_id, finished_at, outputs, params = row
        return CacheEntry(
            key=key,
            run_id=run_id,
            sweep_id=sweep_id,
            finished_at=finished_at,
            outputs=json.loads(outputs),
            params=json.loads(params),
        )

    def get(self, key: str) -> CacheEntry | None:
        rows = self._rows("SELECT * FROM entries WHERE key = ?", (key,))
        return self._entry(rows[0]) if rows else None

    def put(self, entry: CacheEntry) -> None:
        with self._lock:
            self._db().execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry.key,
                    entry.run_id,
                    entry.sweep_id,
                    entry.finished_at,
                    msgspec.json.encode(entry.outputs).decode(),
                    msgspec.json.encode(entry.params).decode(),
                ),
            )

    def delete(self, key: str) -> None:
        if self._conn is not None or self.path.exists():
            with self._lock:
                self._db().execute("DELETE FROM entries WHERE key = ?", (key,))

    def entries(self) -> list[CacheEntry]:
        return [self._entry(r) for r in self._rows("SELECT * FROM entries ORDER BY finished_at")]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
