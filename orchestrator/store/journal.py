"""The journal: one SQLite file (WAL) recording sweeps, runs, every transition, metrics, outputs.

Writes go through one writer thread that drains its queue into a single transaction, so a
transition costs a queue put, not an fsync (WAL with ``synchronous=NORMAL`` syncs only at
checkpoints). :meth:`Journal.flush` waits until everything queued is committed; reads use their
own connection and see all flushed writes. Reads are named methods returning typed rows
(:mod:`orchestrator.store.rows`): no SQL is written outside the store.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrator.exceptions import NotFoundError, StoreError
from orchestrator.procinfo import start_time
from orchestrator.store.rows import RUN_COLUMNS, SWEEP_COLUMNS, CleanupRow, RunRow, SweepRow

__all__ = ["Journal"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY, name TEXT, description TEXT, tags TEXT, spec_path TEXT,
    kind TEXT, total INTEGER, concurrency INTEGER, state TEXT NOT NULL, reason TEXT,
    created_at REAL, started_at REAL, finished_at REAL, pid INTEGER, seed INTEGER,
    pid_start INTEGER, overrides TEXT, component_hash TEXT,
    spec_text TEXT, base_dir TEXT, via_daemon INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, sweep_id TEXT NOT NULL, idx INTEGER NOT NULL, config_hash TEXT,
    params TEXT, argv TEXT, state TEXT NOT NULL, reason TEXT, exit_code INTEGER,
    attempt INTEGER NOT NULL DEFAULT 1, created_at REAL, started_at REAL, finished_at REAL,
    run_dir TEXT, pid INTEGER, pid_start INTEGER, params_hash TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_sweep ON runs (sweep_id, idx);
CREATE INDEX IF NOT EXISTS runs_by_hash ON runs (config_hash);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sweep_id TEXT NOT NULL, run_id TEXT,
    from_state TEXT, to_state TEXT NOT NULL, reason TEXT, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_by_run ON transitions (run_id);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, name TEXT NOT NULL, step INTEGER, value REAL, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics (run_id, name);
CREATE TABLE IF NOT EXISTS cleanups (
    run_id TEXT PRIMARY KEY, path TEXT NOT NULL, due_at REAL NOT NULL, done_at REAL
);
CREATE TABLE IF NOT EXISTS outputs (
    run_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT, PRIMARY KEY (run_id, name)
);
"""

_Statement = tuple[str, tuple[Any, ...]]
_STOP = object()
#: Ids per ``IN (...)`` read (SQLite limits the number of parameters of one statement).
_CHUNK = 500


def _connect(path: Path, schema: bool = False) -> sqlite3.Connection:
    """Open with WAL; retried while another process is creating the same journal (switching
    to WAL and creating tables take locks that SQLite's busy handler does not always wait on)."""
    deadline = time.monotonic() + 30
    while True:
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if schema:
                conn.executescript(SCHEMA)
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Journal:
    """Append-mostly record of everything a sweep did."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._read = _connect(path, schema=True)
            self._write = _connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the journal at {path}: {exc}") from None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ writer thread
    def _writer(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while len(batch) < 5000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            statements = [b for b in batch if isinstance(b, tuple)]
            if statements and self._error is None:
                try:
                    self._write.execute("BEGIN")
                    # Consecutive statements with the same SQL go in one executemany call.
                    for sql, group in itertools.groupby(statements, key=lambda st: st[0]):
                        self._write.executemany(sql, [params for _, params in group])
                    self._write.execute("COMMIT")
                except (sqlite3.Error, OSError) as exc:
                    self._error = exc
                    with contextlib.suppress(sqlite3.Error):
                        self._write.execute("ROLLBACK")
            for b in batch:
                if isinstance(b, threading.Event):
                    b.set()
            if any(b is _STOP for b in batch):
                return

    def _put(self, sql: str, params: Iterable[Any]) -> None:
        if self._error is not None:
            raise StoreError(f"journal write failed: {self._error}")
        self._queue.put((sql, tuple(params)))

    def flush_sync(self, timeout: float = 60.0) -> None:
        """Block until every queued write is committed; raise if one failed."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)
        if self._error is not None:
            raise StoreError(f"journal write failed: {self._error}")

    async def flush(self) -> None:
        import anyio

        await anyio.to_thread.run_sync(self.flush_sync)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=60)
        self._write.close()
        self._read.close()

    # ------------------------------------------------------------------ records
    def add_sweep(
        self,
        sweep_id: str,
        *,
        name: str | None,
        description: str | None,
        tags: list[str],
        spec_path: str,
        kind: str,
        total: int,
        concurrency: int,
        pid: int,
        seed: int | None,
        overrides: dict[str, str] | None = None,
        component_hash: str | None = None,
        daemon_spec: tuple[str, str] | None = None,
    ) -> None:
        """``daemon_spec`` (spec text, base folder) lets a restarted daemon resume the sweep."""
        now = time.time()
        text, base = daemon_spec if daemon_spec is not None else (None, None)
        self._put(
            "INSERT INTO sweeps (id, name, description, tags, spec_path, kind, total, "
            "concurrency, state, created_at, started_at, pid, seed, pid_start, overrides, "
            "component_hash, spec_text, base_dir, via_daemon) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'created', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sweep_id,
                name,
                description,
                json.dumps(tags),
                spec_path,
                kind,
                total,
                concurrency,
                now,
                now,
                pid,
                seed,
                start_time(pid),
                json.dumps(overrides or {}),
                component_hash,
                text,
                base,
                int(daemon_spec is not None),
            ),
        )

    def reopen_sweep(
        self, sweep_id: str, *, pid: int, total: int, concurrency: int, component_hash: str
    ) -> None:
        """A resumed sweep belongs to this process now."""
        self._put(
            "UPDATE sweeps SET pid = ?, pid_start = ?, total = ?, concurrency = ?, "
            "component_hash = ?, finished_at = NULL WHERE id = ?",
            (pid, start_time(pid), total, concurrency, component_hash, sweep_id),
        )

    def set_sweep_state(
        self, sweep_id: str, state: str, reason: str | None, finished: bool
    ) -> None:
        now = time.time()
        self._put(
            "UPDATE sweeps SET state = ?, reason = ?, finished_at = ? WHERE id = ?",
            (state, reason, now if finished else None, sweep_id),
        )
        self._put(
            "INSERT INTO transitions (sweep_id, run_id, from_state, to_state, reason, at) "
            "VALUES (?, NULL, NULL, ?, ?, ?)",
            (sweep_id, state, reason, now),
        )

    def add_run(
        self,
        run_id: str,
        sweep_id: str,
        index: int,
        config_hash: str,
        params: str,
        argv: str,
        run_dir: str,
        params_hash: str = "",
    ) -> None:
        now = time.time()
        self._put(
            "INSERT INTO runs (id, sweep_id, idx, config_hash, params, argv, state, created_at, "
            "run_dir, params_hash) VALUES (?, ?, ?, ?, ?, ?, 'created', ?, ?, ?)",
            (run_id, sweep_id, index, config_hash, params, argv, now, run_dir, params_hash),
        )
        self._put(
            "INSERT INTO transitions (sweep_id, run_id, from_state, to_state, reason, at) "
            "VALUES (?, ?, NULL, 'created', NULL, ?)",
            (sweep_id, run_id, now),
        )

    def record_transition(
        self,
        sweep_id: str,
        run_id: str,
        previous: str,
        state: str,
        reason: str | None,
        exit_code: int | None,
        attempt: int,
        pid: int | None = None,
        *,
        started: bool = False,
        finished: bool = False,
    ) -> None:
        """A checked run transition (the engine checks; ``started``/``finished`` say whether
        it starts the run's clock or ends it: the store knows no state table)."""
        now = time.time()
        self._put(
            "UPDATE runs SET state = ?, reason = ?, exit_code = COALESCE(?, exit_code), "
            "attempt = ?, started_at = COALESCE(?, started_at), "
            "finished_at = COALESCE(?, finished_at), pid = COALESCE(?, pid), "
            "pid_start = COALESCE(?, pid_start) WHERE id = ?",
            (
                state,
                reason,
                exit_code,
                attempt,
                now if started else None,
                now if finished else None,
                pid,
                start_time(pid) if pid else None,
                run_id,
            ),
        )
        self._put(
            "INSERT INTO transitions (sweep_id, run_id, from_state, to_state, reason, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (sweep_id, run_id, previous, state, reason, now),
        )

    def add_metrics(self, run_id: str, step: int | None, values: dict[str, float]) -> None:
        now = time.time()
        for name, value in values.items():
            self._put(
                "INSERT INTO metrics (run_id, name, step, value, at) VALUES (?, ?, ?, ?, ?)",
                (run_id, name, step, value, now),
            )

    def add_cleanup(self, run_id: str, path: str, due_at: float) -> None:
        """``termination.ttl``: remove ``path`` at ``due_at`` (by this or a later process)."""
        self._put(
            "INSERT OR REPLACE INTO cleanups (run_id, path, due_at) VALUES (?, ?, ?)",
            (run_id, path, due_at),
        )

    def cleanup_done(self, run_id: str) -> None:
        self._put("UPDATE cleanups SET done_at = ? WHERE run_id = ?", (time.time(), run_id))

    def run_due_cleanups(self) -> int:
        """Remove the working files of runs whose ``ttl`` has passed; returns how many."""
        import shutil

        due = self.due_cleanups()
        for row in due:
            shutil.rmtree(row.path, ignore_errors=True)
            self.cleanup_done(row.run_id)
        return len(due)

    def copy_metrics(self, source_run: str, target_run: str) -> None:
        """Give ``target_run`` every metric report of ``source_run`` (a cache hit)."""
        self._put(
            "INSERT INTO metrics (run_id, name, step, value, at) SELECT ?, name, step, "
            "value, at FROM metrics WHERE run_id = ? ORDER BY rowid",
            (target_run, source_run),
        )

    def set_output(self, run_id: str, name: str, value: Any) -> None:
        self._put(
            "INSERT OR REPLACE INTO outputs (run_id, name, value) VALUES (?, ?, ?)",
            (run_id, name, json.dumps(value)),
        )

    # ------------------------------------------------------------------ reads
    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._read.execute(sql, tuple(params)))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the journal at {self.path}: {exc}") from None

    def _sweeps(self, where: str, params: Iterable[Any] = ()) -> list[SweepRow]:
        rows = self._query(f"SELECT {SWEEP_COLUMNS} FROM sweeps {where}", params)
        return [SweepRow.from_db(row) for row in rows]

    def _runs(self, where: str, params: Iterable[Any] = ()) -> list[RunRow]:
        rows = self._query(f"SELECT {RUN_COLUMNS} FROM runs {where}", params)
        return [RunRow.from_db(row) for row in rows]

    def find_sweep(self, ref: str) -> SweepRow:
        """A sweep by id, unique id prefix, or ``last``."""
        if ref == "last":
            newest = self.latest_sweeps(1)
            if not newest:
                raise NotFoundError(f"no sweeps yet in {self.path.parent}")
            return newest[0]
        rows = self._sweeps("WHERE id LIKE ? || '%' ORDER BY created_at", (ref,))
        if not rows:
            raise NotFoundError(f"no sweep matches {ref!r} in {self.path.parent}")
        if len(rows) > 1 and rows[0].id != ref:
            raise NotFoundError(f"{ref!r} matches {len(rows)} sweeps; give more characters")
        return rows[0]

    def latest_sweeps(self, limit: int) -> list[SweepRow]:
        """The newest ``limit`` sweeps, newest first."""
        return self._sweeps("ORDER BY created_at DESC LIMIT ?", (limit,))

    def latest_sweep_of_spec(self, spec_path: str) -> str | None:
        """The id of the newest sweep of the spec at ``spec_path`` (None: there is none)."""
        rows = self._query(
            "SELECT id FROM sweeps WHERE spec_path = ? ORDER BY created_at DESC LIMIT 1",
            (spec_path,),
        )
        return str(rows[0][0]) if rows else None

    def unfinished_sweeps(self, states: Iterable[str]) -> list[SweepRow]:
        """Sweeps in one of ``states`` (the caller says which states are unfinished)."""
        wanted = [str(state) for state in states]
        marks = ",".join("?" * len(wanted))
        return self._sweeps(f"WHERE state IN ({marks}) ORDER BY created_at", wanted)

    def lost_daemon_sweeps(self, reason: str) -> list[SweepRow]:
        """Sweeps a daemon ran that failed with ``reason`` (their orchestrator was lost)."""
        return self._sweeps(
            "WHERE via_daemon = 1 AND state = 'failed' AND reason = ? ORDER BY created_at",
            (reason,),
        )

    def find_run(self, ref: str) -> RunRow:
        """A run by id or unique id prefix."""
        rows = self._runs("WHERE id LIKE ? || '%'", (ref,))
        if not rows:
            raise NotFoundError(f"no run matches {ref!r} in {self.path.parent}")
        if len(rows) > 1:
            raise NotFoundError(f"{ref!r} matches {len(rows)} runs; give more characters")
        return rows[0]

    def run_at(self, sweep_id: str, index: int) -> RunRow | None:
        """The newest attempt of configuration ``index`` of a sweep (None: no such run)."""
        rows = self._runs(
            "WHERE sweep_id = ? AND idx = ? ORDER BY created_at DESC LIMIT 1", (sweep_id, index)
        )
        return rows[0] if rows else None

    def run_state(self, run_id: str) -> str | None:
        """The state of one run (None: no such run)."""
        rows = self._query("SELECT state FROM runs WHERE id = ?", (run_id,))
        return str(rows[0][0]) if rows else None

    def runs_of(self, sweep_id: str) -> list[RunRow]:
        """Every attempt of every configuration of a sweep, in matrix order."""
        return self._runs("WHERE sweep_id = ? ORDER BY idx, created_at", (sweep_id,))

    def unfinished_runs(self, sweep_id: str, states: Iterable[str]) -> list[RunRow]:
        """The runs of a sweep in one of ``states`` (the caller says which are unfinished)."""
        wanted = [str(state) for state in states]
        marks = ",".join("?" * len(wanted))
        return self._runs(
            f"WHERE sweep_id = ? AND state IN ({marks}) ORDER BY idx, created_at",
            (sweep_id, *wanted),
        )

    def latest_runs(self, sweep_id: str) -> list[RunRow]:
        """The newest run of each configuration of a sweep, in matrix order."""
        return self._runs(
            "r WHERE sweep_id = ? AND created_at = (SELECT max(created_at) "
            "FROM runs WHERE sweep_id = r.sweep_id AND params_hash = r.params_hash) "
            "ORDER BY idx, created_at",
            (sweep_id,),
        )

    def due_cleanups(self) -> list[CleanupRow]:
        """``termination.ttl`` removals whose time has come and that are not done yet."""
        rows = self._query(
            "SELECT run_id, path FROM cleanups WHERE done_at IS NULL AND due_at <= ?",
            (time.time(),),
        )
        return [CleanupRow(run_id, path) for run_id, path in rows]

    def last_metrics(self, run_ids: list[str]) -> dict[str, dict[str, float]]:
        """The last reported value of every metric of each run."""
        out: dict[str, dict[str, float]] = {}
        for start in range(0, len(run_ids), _CHUNK):
            chunk = run_ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                f"SELECT run_id, name, value FROM metrics WHERE run_id IN ({marks}) ORDER BY rowid",
                chunk,
            )
            for run_id, name, value in rows:
                out.setdefault(run_id, {})[name] = value
        return out

    def outputs_of(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The outputs of each run, decoded."""
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(run_ids), _CHUNK):
            chunk = run_ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for run_id, name, value in self._query(
                f"SELECT run_id, name, value FROM outputs WHERE run_id IN ({marks})", chunk
            ):
                out.setdefault(run_id, {})[name] = json.loads(value)
        return out
