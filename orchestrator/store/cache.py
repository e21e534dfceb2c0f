"""The run cache's records on disk, shared by the cache plugin and ``orchestrator cache``.

One small SQLite file (WAL) under ``HOME/cache/``: a lookup is an indexed read and a store one
insert, a few microseconds each, and concurrent orchestrators on one home folder see whole
records or none. Three tables:

* ``entries``: one per key, the succeeded run that answers it, with the key's parts;
* ``decisions``: what the cache decided for each run (hit, miss and why, off), with the key's
  parts, so ``cache explain`` can say why a run missed; only the newest
  :data:`MAX_DECISIONS` are kept;
* ``claims``: the keys of runs in flight, with the claimant's pid and start time, so a second
  orchestrator on the same home waits for an identical run instead of running it again (a
  dead claimant's claim is taken over).

The key itself is computed by the cache plugin; this module only stores and lists records
(``orchestrator.views`` and ``orchestrator.cache_explain`` print them).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["MAX_DECISIONS", "CacheEntry", "CacheStore", "Claim", "Decision"]

#: Decisions kept (the newest); older ones are dropped as new ones come.
MAX_DECISIONS = 10_000

_TABLES = (
    """CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, run_id TEXT NOT NULL, sweep_id TEXT NOT NULL, finished_at REAL NOT NULL,
    outputs TEXT NOT NULL, params TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS decisions (
    run_id TEXT PRIMARY KEY, sweep_id TEXT NOT NULL, key TEXT, decided_at REAL NOT NULL,
    verdict TEXT NOT NULL, detail TEXT NOT NULL, source_run_id TEXT, parts TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY, run_id TEXT NOT NULL, sweep_id TEXT NOT NULL, pid INTEGER NOT NULL,
    pid_start INTEGER, claimed_at REAL NOT NULL
)""",
)
_ENTRY_COLUMNS = "key, run_id, sweep_id, finished_at, outputs, params, parts"
_DECISION_COLUMNS = "run_id, sweep_id, key, decided_at, verdict, detail, source_run_id, parts"


class CacheEntry(msgspec.Struct, kw_only=True):
    key: str
    run_id: str
    sweep_id: str
    finished_at: float
    outputs: dict[str, Any] = {}
    params: dict[str, Any] = {}
    #: The key's parts (``{"params:lr": 0.1, "code:tree": "…"}``); empty for old entries.
    parts: dict[str, Any] = {}


class Decision(msgspec.Struct, kw_only=True):
    """What the cache decided for one run."""

    run_id: str
    sweep_id: str
    #: None when the cache was off for the run (no key was computed).
    key: str | None
    decided_at: float
    #: ``hit``, ``miss`` or ``off``.
    verdict: str
    #: Why, in words (``no entry``, ``entry expired``...).
    detail: str
    source_run_id: str | None = None
    parts: dict[str, Any] = {}


class Claim(msgspec.Struct, kw_only=True):
    """A run in flight under ``key``, in the process ``pid`` (started at ``pid_start``)."""

    key: str
    run_id: str
    sweep_id: str
    pid: int
    pid_start: int | None
    claimed_at: float


class CacheStore:
    """The records of one home folder (one connection per store, usable from any thread)."""

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
            for table in _TABLES:
                conn.execute(table)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
            if "parts" not in columns:  # a cache written before the key's parts were kept
                conn.execute("ALTER TABLE entries ADD COLUMN parts TEXT")
            self._conn = conn
        return self._conn

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._conn is None and not self.path.exists():
            return []
        with self._lock:
            return list(self._db().execute(sql, params))

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``) so that what it read
        cannot change before it writes."""
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ------------------------------------------------------------------ entries
    @staticmethod
    def _entry(row: tuple[Any, ...]) -> CacheEntry:
        key, run_id, sweep_id, finished_at, outputs, params, parts = row
        return CacheEntry(
            key=key,
            run_id=run_id,
            sweep_id=sweep_id,
            finished_at=finished_at,
            outputs=json.loads(outputs),
            params=json.loads(params),
            parts=json.loads(parts) if parts else {},
        )

    def get(self, key: str) -> CacheEntry | None:
        rows = self._rows(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE key = ?", (key,))
        return self._entry(rows[0]) if rows else None

    def put(self, entry: CacheEntry) -> None:
        with self._lock:
            self._db().execute(
                f"INSERT OR REPLACE INTO entries ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.key,
                    entry.run_id,
                    entry.sweep_id,
                    entry.finished_at,
                    _json(entry.outputs),
                    _json(entry.params),
                    _json(entry.parts),
                ),
            )

    def delete(self, key: str, *, run_id: str | None = None) -> None:
        """Drop the entry of ``key`` (only if it is still ``run_id``'s, when given)."""
        if self._conn is not None or self.path.exists():
            with self._lock:
                if run_id is None:
                    self._db().execute("DELETE FROM entries WHERE key = ?", (key,))
                else:
                    self._db().execute(
                        "DELETE FROM entries WHERE key = ? AND run_id = ?", (key, run_id)
                    )

    def entries(self) -> list[CacheEntry]:
        rows = self._rows(f"SELECT {_ENTRY_COLUMNS} FROM entries ORDER BY finished_at")
        return [self._entry(r) for r in rows]

    # ------------------------------------------------------------------ decisions
    def record(self, decision: Decision) -> None:
        """Keep ``decision`` (replacing an earlier one for the same run) and drop the oldest
        beyond :data:`MAX_DECISIONS`."""
        with self._write() as db:
            cursor = db.execute(
                f"INSERT OR REPLACE INTO decisions ({_DECISION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    decision.run_id,
                    decision.sweep_id,
                    decision.key,
                    decision.decided_at,
                    decision.verdict,
                    decision.detail,
                    decision.source_run_id,
                    _json(decision.parts),
                ),
            )
            db.execute(
                "DELETE FROM decisions WHERE rowid <= ?", ((cursor.lastrowid or 0) - MAX_DECISIONS,)
            )

    def decision(self, run_id: str) -> Decision | None:
        rows = self._rows(f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        run, sweep, key, at, verdict, detail, source, parts = rows[0]
        return Decision(
            run_id=run,
            sweep_id=sweep,
            key=key,
            decided_at=at,
            verdict=verdict,
            detail=detail,
            source_run_id=source,
            parts=json.loads(parts),
        )

    # ------------------------------------------------------------------ claims
    def claim(self, claim: Claim, alive: Callable[[Claim], bool]) -> Claim | None:
        """Claim ``claim.key`` for ``claim.run_id`` unless another run holds it and
        ``alive(holder)``; returns that live holder (None: the claim is ours)."""
        with self._write() as db:
            row = db.execute(
                "SELECT key, run_id, sweep_id, pid, pid_start, claimed_at FROM claims "
                "WHERE key = ?",
                (claim.key,),
            ).fetchone()
            if row is not None:
                key, run_id, sweep_id, pid, pid_start, claimed_at = row
                holder = Claim(
                    key=key,
                    run_id=run_id,
                    sweep_id=sweep_id,
                    pid=pid,
                    pid_start=pid_start,
                    claimed_at=claimed_at,
                )
                if holder.run_id != claim.run_id and alive(holder):
                    return holder
            db.execute(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?)",
                (
                    claim.key,
                    claim.run_id,
                    claim.sweep_id,
                    claim.pid,
                    claim.pid_start,
                    claim.claimed_at,
                ),
            )
        return None

    def release(self, key: str, run_id: str) -> None:
        """Drop ``run_id``'s claim on ``key`` (a claim taken over since is left alone)."""
        if self._conn is not None or self.path.exists():
            with self._lock:
                self._db().execute("DELETE FROM claims WHERE key = ? AND run_id = ?", (key, run_id))

    def release_sweep(self, sweep_id: str, pid: int) -> None:
        """Drop every claim the process ``pid`` holds for a sweep (a safety net when it ends)."""
        if self._conn is not None or self.path.exists():
            with self._lock:
                self._db().execute(
                    "DELETE FROM claims WHERE sweep_id = ? AND pid = ?", (sweep_id, pid)
                )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()
