"""A journal whose writes fail on demand, the way SQLite fails them on a full disk."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.store import journal as journal_module

__all__ = ["DiskFull"]

#: What SQLite says when the disk is full (``SQLITE_FULL``).
FULL = "database or disk is full"
_Trigger = Callable[[str, list[tuple[Any, ...]]], bool]


class _FailingWrites:
    """A journal's write connection: while ``disk`` is full, every statement and COMMIT fails
    with ``SQLITE_FULL`` (BEGIN, ROLLBACK and PRAGMAs go through, as on a real full disk)."""

    def __init__(self, conn: sqlite3.Connection, disk: DiskFull) -> None:
        self.conn = conn
        self.disk = disk

    def _check(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self.disk.trigger is not None and self.disk.trigger(sql, rows):
            self.disk.start()
        if self.disk.full and sql not in ("BEGIN", "ROLLBACK") and not sql.startswith("PRAGMA"):
            self.disk.failed.set()
            raise sqlite3.OperationalError(FULL)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        self._check(sql, [params])
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> sqlite3.Cursor:
        listed = list(rows)
        self._check(sql, listed)
        return self.conn.executemany(sql, listed)

    def close(self) -> None:
        self.conn.close()


class DiskFull:
    """Every journal opened after :meth:`install` writes through a connection that fails while
    the disk is "full": from :meth:`start` (or the first statement ``trigger`` matches) until
    :meth:`stop`. Reads are untouched."""

    def __init__(self, trigger: _Trigger | None = None) -> None:
        self.trigger = trigger
        self._full = threading.Event()
        #: Set once a write has failed.
        self.failed = threading.Event()

    @property
    def full(self) -> bool:
        return self._full.is_set()

    def start(self) -> None:
        self.trigger = None
        self._full.set()

    def stop(self) -> None:
        self._full.clear()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> DiskFull:
        real = journal_module._connect

        def connect(path: Path, schema: bool = False) -> Any:
            conn = real(path, schema)
            return conn if schema else _FailingWrites(conn, self)

        monkeypatch.setattr(journal_module, "_connect", connect)
        return self


def run_state_is(state: str) -> _Trigger:
    """A trigger: the first journaled run transition to ``state``."""

    def matches(sql: str, rows: list[tuple[Any, ...]]) -> bool:
        return sql.startswith("UPDATE runs SET state") and any(row[0] == state for row in rows)

    return matches
