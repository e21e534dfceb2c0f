"""The journal: one SQLite file (WAL) recording sweeps, runs, every transition, metrics, outputs.

Writes go through one writer thread that drains its queue into a single transaction, so a
transition costs a queue put, not an fsync (WAL with ``synchronous=NORMAL`` syncs only at
checkpoints). Reads use their own connection and see every committed write. Reads are named
methods returning typed rows (:mod:`orchestrator.store.rows`): no SQL is written outside the
store.

Each named write is one *record* of a sweep: its statements commit together or not at all.
A *durable* record is one somebody will be told is accepted (a new or resumed sweep, added
configurations, a close): its transaction syncs the WAL, and whoever says "accepted" first
awaits :meth:`commit`, which raises if it was not written (nothing was promised, so nothing
else happens). When a transaction fails (a full disk, an I/O error), its records are tried one
by one; the other records that still fail are dropped, and their sweeps are marked
:meth:`lost` and told (:meth:`watch`): the journal's account of them is incomplete, so they
end ``failed``. A sweep's final state is the one record kept and retried until it commits, so
that a sweep never stays ``running`` here after it ended. Nothing is refused for good: later
writes go on, and while the writer cannot write it says so (:attr:`write_error`,
:meth:`on_health`) and tries again every :attr:`RETRY_S` seconds, so it recovers by itself.
Readers wait with :meth:`flush`, which never raises for a failed write.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from orchestrator.exceptions import NotFoundError, StoreError
from orchestrator.procinfo import start_time
from orchestrator.store.rows import (
    RUN_COLUMNS,
    SWEEP_COLUMNS,
    CleanupRow,
    OpenMappingRow,
    RunRow,
    SweepRow,
)

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
CREATE TABLE IF NOT EXISTS open_mappings (
    sweep_id TEXT PRIMARY KEY, closed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS configurations (
    sweep_id TEXT NOT NULL, idx INTEGER NOT NULL, params TEXT NOT NULL,
    PRIMARY KEY (sweep_id, idx)
);
CREATE TABLE IF NOT EXISTS writer_probe (id INTEGER PRIMARY KEY, at REAL);
"""

_Statement = tuple[str, tuple[Any, ...]]
_STOP = object()
#: Ids per ``IN (...)`` read (SQLite limits the number of parameters of one statement).
_CHUNK = 500
#: What a write attempt may raise (a full disk, an I/O error, a lock held too long).
_WRITE_ERRORS = (sqlite3.Error, OSError)
#: ``LIKE`` wildcards and the escape character itself, escaped: an id prefix matches literally.
_LIKE_ESCAPES = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})
_PROBE = "INSERT OR REPLACE INTO writer_probe (id, at) VALUES (1, ?)"


def _prefix_pattern(prefix: str) -> str:
    """The pattern of ``LIKE ? ESCAPE '\\'`` for ids starting with ``prefix`` (literally)."""
    return prefix.translate(_LIKE_ESCAPES) + "%"


class _Record(NamedTuple):
    """The statements of one named write: committed together, or lost together. (A tuple:
    one is made per transition, so it must be cheap to make.)"""

    statements: tuple[_Statement, ...]
    #: The sweep it belongs to (losing it fails that sweep); None: no sweep's (a probe).
    sweep: str | None
    #: Kept after a failure and tried again until it commits; a newer record with the same
    #: key replaces it. Only a sweep's final state has one.
    retry: str | None = None
    #: Someone is told it is accepted once it commits: it is committed with the WAL synced
    #: (``synchronous=FULL``), and losing it refuses it to whoever awaits :meth:`commit`
    #: instead of failing its sweep (nothing was promised).
    durable: bool = False


class _Gathering(threading.local):
    """Per thread: the records :meth:`Journal.together` is gathering (None: not in one)."""

    records: list[_Record] | None = None


class _Flush:
    """A flush waiting in the queue: set once every write queued before it was tried."""

    def __init__(self, failures: int) -> None:
        self.done = threading.Event()
        #: The writer's count of failed attempts when this was queued.
        self.failures = failures
        #: Why a write failed between then and now (None: none did).
        self.error: str | None = None


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


def _describe(exc: BaseException) -> str:
    """A write error as one line (SQLite's own words: ``database or disk is full``)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _tell(listener: Callable[[Any], None], value: Any) -> None:
    """Call a watcher on the writer thread; one that raises must not stop the writer."""
    with contextlib.suppress(Exception):
        listener(value)


class Journal:
    """Append-mostly record of everything a sweep did."""

    #: Seconds between attempts while the writer cannot write.
    RETRY_S = 1.0

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # a new home is private
            self._read = _connect(path, schema=True)
            self._write = _connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the journal at {path}: {exc}") from None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: Why the last attempt failed, while the writer cannot write (None: writes commit).
        self._failing: str | None = None
        #: Failed attempts so far, and the error of the latest (for flushes to compare).
        self._failures = 0
        self._last_error: str | None = None
        #: Sweeps that lost a write, and why; who to tell when one does.
        self._lost: dict[str, str] = {}
        #: Sweeps whose last durable record was lost, and why (for :meth:`commit` to raise).
        self._refused: dict[str, str] = {}
        self._watchers: dict[str, Callable[[str], None]] = {}
        self._health: list[Callable[[str | None], None]] = []
        #: Records kept after a failure, to be tried again (by retry key, oldest first).
        self._retries: dict[str, _Record] = {}
        #: The sweep of each run journaled here that has not ended (metrics, outputs and
        #: cleanups name only the run).
        self._owners: dict[str, str] = {}
        #: Records being gathered into one by :meth:`together`, per thread.
        self._gathering = _Gathering()
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ writer thread
    def _writer(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.RETRY_S if self._failing else None)
            except queue.Empty:  # cannot write, and nothing new: try again
                self._attempt([], probe=True)
                continue
            batch = [item]
            while len(batch) < 5000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            records = [b for b in batch if isinstance(b, _Record)]
            if records or self._retries:
                self._attempt(records)
            for b in batch:
                if isinstance(b, _Flush):
                    if b.failures != self._failures:
                        b.error = self._last_error
                    b.done.set()
            if any(b is _STOP for b in batch):
                return

    def _attempt(self, records: list[_Record], probe: bool = False) -> None:
        """Commit the kept records and ``records`` in one transaction; if that fails, each
        record in its own, so that only the ones that cannot be written are lost."""
        todo = records
        if self._retries:
            newer = {r.retry for r in records if r.retry is not None}
            todo = [r for key, r in self._retries.items() if key not in newer] + records
        if not todo and probe:  # nothing to write: does a write work again?
            todo = [_Record(((_PROBE, (time.time(),)),), None)]
        if not todo:
            return
        failed: list[tuple[_Record, str]] = []
        try:
            self._transaction(todo)
        except _WRITE_ERRORS as exc:
            if len(todo) == 1:
                failed.append((todo[0], _describe(exc)))
            else:
                for record in todo:
                    try:
                        self._transaction([record])
                    except _WRITE_ERRORS as each:
                        failed.append((record, _describe(each)))
        self._settle(todo, failed)

    def _transaction(self, records: list[_Record]) -> None:
        conn = self._write
        durable = any(r.durable for r in records)
        statements = itertools.chain.from_iterable(r.statements for r in records)
        try:
            if durable:
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN")
            # Consecutive statements with the same SQL go in one executemany call.
            for sql, group in itertools.groupby(statements, key=lambda st: st[0]):
                conn.executemany(sql, [params for _, params in group])
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        finally:
            if durable:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA synchronous=NORMAL")

    def _settle(self, tried: list[_Record], failed: list[tuple[_Record, str]]) -> None:
        """Keep the failed records that are retried, mark the sweeps that lost one, and tell
        their watchers and, when it changed, whether the writer can write."""
        if self._retries:
            for record in tried:
                if record.retry is not None:
                    self._retries.pop(record.retry, None)
        told: list[tuple[Callable[[str], None], str]] = []
        for record, error in failed:
            if record.retry is not None:
                self._retries[record.retry] = record
            if record.sweep is not None and record.durable:
                self._refused[record.sweep] = error
            elif record.sweep is not None and record.sweep not in self._lost:
                self._lost[record.sweep] = error
                watcher = self._watchers.get(record.sweep)
                if watcher is not None:
                    told.append((watcher, error))
        was = self._failing
        if failed:
            self._failures += 1
            self._failing = self._last_error = failed[-1][1]
        else:
            self._failing = None
        for watcher, error in told:
            _tell(watcher, error)
        if (was is None) != (self._failing is None):
            for listener in list(self._health):
                _tell(listener, self._failing)

    def _add(
        self,
        *statements: _Statement,
        sweep: str | None,
        retry: str | None = None,
        durable: bool = False,
    ) -> None:
        record = _Record(tuple(statements), sweep, retry, durable)
        gathering = self._gathering.records
        if gathering is not None:
            gathering.append(record)
        else:
            self._queue.put(record)

    @contextlib.contextmanager
    def together(self, sweep_id: str) -> Iterator[None]:
        """The writes made in this block (on this thread) are one record of ``sweep_id``:
        committed together or lost together. Nothing is queued if the block raises."""
        gathered: list[_Record] = []
        self._gathering.records = gathered
        try:
            yield
        finally:
            self._gathering.records = None
        if not gathered:
            return
        retry = next((r.retry for r in reversed(gathered) if r.retry is not None), None)
        self._add(
            *(s for r in gathered for s in r.statements),
            sweep=sweep_id,
            retry=retry,
            durable=any(r.durable for r in gathered),
        )

    # ------------------------------------------------------------------ waiting, health
    def flush_sync(
        self, timeout: float = 60.0, *, sweep_id: str | None = None, check: bool = True
    ) -> None:
        """Block until every write queued so far has been tried.

        With ``check`` (the default), raise StoreError if one of them failed, or, given
        ``sweep_id``, if a write of that sweep was lost (whenever it was queued) or its last
        durable record was refused. With ``check=False`` only wait: afterwards, reads see
        everything that committed."""
        marker = _Flush(self._failures)
        self._queue.put(marker)
        finished = marker.done.wait(timeout)
        if not check:
            return
        if not finished:
            raise StoreError(f"the journal at {self.path} did not write within {timeout:g}s")
        if sweep_id is not None:
            error = self._lost.get(sweep_id) or self._refused.pop(sweep_id, None)
        else:
            error = marker.error
        if error is not None:
            raise StoreError(f"journal write failed: {error}")

    async def flush(self) -> None:
        """Wait, off the event loop, until everything queued has been tried (for readers).
        A failed write is not raised here: its sweep is told, and :attr:`write_error` says."""
        import anyio

        await anyio.to_thread.run_sync(functools.partial(self.flush_sync, check=False))

    async def commit(self, sweep_id: str) -> None:
        """Wait, off the event loop, until every write of ``sweep_id`` queued so far is
        committed; StoreError if one was lost. Nothing is "accepted" before this returns."""
        import anyio

        await anyio.to_thread.run_sync(functools.partial(self.flush_sync, sweep_id=sweep_id))

    @property
    def write_error(self) -> str | None:
        """Why the last write failed, while the writer cannot write; None while writes
        commit."""
        return self._failing

    def on_health(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(error)`` when the writer starts failing and ``listener(None)`` when
        it writes again; on the writer thread, so it must not block."""
        self._health.append(listener)

    def lost(self, sweep_id: str) -> str | None:
        """Why a write of that sweep was lost; None if none was (since :meth:`forget`)."""
        return self._lost.get(sweep_id)

    def watch(self, sweep_id: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(error)`` when a write of that sweep is lost, on the writer thread
        (it must not block, and may be told twice); at once if one already was."""
        self._watchers[sweep_id] = callback
        error = self._lost.get(sweep_id)
        if error is not None:
            _tell(callback, error)

    def forget(self, sweep_id: str) -> None:
        """Drop that sweep's watcher and its lost writes (its controller is done, or it is
        about to start afresh). A final state waiting to be retried stays."""
        self._watchers.pop(sweep_id, None)
        self._lost.pop(sweep_id, None)
        self._refused.pop(sweep_id, None)

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
        """A new sweep, ``created``; ``daemon_spec`` (spec text, base folder) lets a restarted
        daemon resume it. Durable: its commit syncs the WAL (the sweep is being accepted)."""
        now = time.time()
        text, base = daemon_spec if daemon_spec is not None else (None, None)
        statement = (
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
        self._add(statement, sweep=sweep_id, durable=True)

    def reopen_sweep(
        self,
        sweep_id: str,
        *,
        pid: int,
        total: int,
        concurrency: int,
        component_hash: str,
        via_daemon: bool | None = None,
    ) -> None:
        """A resumed sweep belongs to this process now (``via_daemon``: a daemon's, which a
        restarted daemon resumes; None leaves that as it was). Durable, like a new sweep."""
        self._add(
            (
                "UPDATE sweeps SET pid = ?, pid_start = ?, total = ?, concurrency = ?, "
                "component_hash = ?, finished_at = NULL, via_daemon = COALESCE(?, via_daemon) "
                "WHERE id = ?",
                (
                    pid,
                    start_time(pid),
                    total,
                    concurrency,
                    component_hash,
                    None if via_daemon is None else int(via_daemon),
                    sweep_id,
                ),
            ),
            sweep=sweep_id,
            durable=True,
        )

    def set_sweep_state(
        self, sweep_id: str, state: str, reason: str | None, finished: bool
    ) -> None:
        """A checked sweep transition. A final one (``finished``) is retried after a failed
        write until it commits: a sweep that ended must not stay ``running`` here."""
        now = time.time()
        self._add(
            (
                "UPDATE sweeps SET state = ?, reason = ?, finished_at = ? WHERE id = ?",
                (state, reason, now if finished else None, sweep_id),
            ),
            (
                "INSERT INTO transitions (sweep_id, run_id, from_state, to_state, reason, at) "
                "VALUES (?, NULL, NULL, ?, ?, ?)",
                (sweep_id, state, reason, now),
            ),
            sweep=sweep_id,
            retry=f"end:{sweep_id}" if finished else None,
        )

    def open_mapping(self, sweep_id: str) -> None:
        """The sweep's mapping is open: configurations may be added until it is closed."""
        self._add(
            ("INSERT OR IGNORE INTO open_mappings (sweep_id) VALUES (?)", (sweep_id,)),
            sweep=sweep_id,
            durable=True,
        )

    def add_configurations(self, sweep_id: str, first: int, values: list[dict[str, Any]]) -> None:
        """Configurations added to an open mapping, the first at index ``first``. Durable:
        await :meth:`commit` before saying they are accepted."""
        sql = "INSERT OR REPLACE INTO configurations (sweep_id, idx, params) VALUES (?, ?, ?)"
        self._add(
            *((sql, (sweep_id, first + i, json.dumps(v))) for i, v in enumerate(values)),
            sweep=sweep_id,
            durable=True,
        )

    def close_mapping(self, sweep_id: str) -> None:
        """No more configurations: the sweep ends once the added ones have run. Durable."""
        self._add(
            ("UPDATE open_mappings SET closed = 1 WHERE sweep_id = ?", (sweep_id,)),
            sweep=sweep_id,
            durable=True,
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
        self._owners[run_id] = sweep_id
        self._add(
            (
                "INSERT INTO runs (id, sweep_id, idx, config_hash, params, argv, state, "
                "created_at, run_dir, params_hash) VALUES (?, ?, ?, ?, ?, ?, 'created', ?, ?, ?)",
                (run_id, sweep_id, index, config_hash, params, argv, now, run_dir, params_hash),
            ),
            (
                "INSERT INTO transitions (sweep_id, run_id, from_state, to_state, reason, at) "
                "VALUES (?, ?, NULL, 'created', NULL, ?)",
                (sweep_id, run_id, now),
            ),
            sweep=sweep_id,
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
        if finished:
            self._owners.pop(run_id, None)
        self._add(
            (
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
            ),
            (
                "INSERT INTO transitions (sweep_id, run_id, from_state, to_state, reason, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (sweep_id, run_id, previous, state, reason, now),
            ),
            sweep=sweep_id,
        )

    def add_metrics(self, run_id: str, step: int | None, values: dict[str, float]) -> None:
        now = time.time()
        sql = "INSERT INTO metrics (run_id, name, step, value, at) VALUES (?, ?, ?, ?, ?)"
        self._add(
            *((sql, (run_id, name, step, value, now)) for name, value in values.items()),
            sweep=self._owners.get(run_id),
        )

    def add_cleanup(self, run_id: str, path: str, due_at: float) -> None:
        """``termination.ttl``: remove ``path`` at ``due_at`` (by this or a later process)."""
        self._add(
            (
                "INSERT OR REPLACE INTO cleanups (run_id, path, due_at) VALUES (?, ?, ?)",
                (run_id, path, due_at),
            ),
            sweep=self._owners.get(run_id),
        )

    def cleanup_done(self, run_id: str) -> None:
        self._add(
            ("UPDATE cleanups SET done_at = ? WHERE run_id = ?", (time.time(), run_id)),
            sweep=self._owners.get(run_id),
        )

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
        self._add(
            (
                "INSERT INTO metrics (run_id, name, step, value, at) SELECT ?, name, step, "
                "value, at FROM metrics WHERE run_id = ? ORDER BY rowid",
                (target_run, source_run),
            ),
            sweep=self._owners.get(target_run),
        )

    def set_output(self, run_id: str, name: str, value: Any) -> None:
        self._add(
            (
                "INSERT OR REPLACE INTO outputs (run_id, name, value) VALUES (?, ?, ?)",
                (run_id, name, json.dumps(value)),
            ),
            sweep=self._owners.get(run_id),
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
        rows = self._sweeps(
            "WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at", (_prefix_pattern(ref),)
        )
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

    def open_mapping_of(self, sweep_id: str) -> OpenMappingRow | None:
        """An open mapping's state and added configurations (None: the sweep's mapping was
        never open)."""
        rows = self._query("SELECT closed FROM open_mappings WHERE sweep_id = ?", (sweep_id,))
        if not rows:
            return None
        values = self._query(
            "SELECT params FROM configurations WHERE sweep_id = ? ORDER BY idx", (sweep_id,)
        )
        return OpenMappingRow(bool(rows[0][0]), [json.loads(v) for (v,) in values])

    def find_run(self, ref: str) -> RunRow:
        """A run by id or unique id prefix."""
        rows = self._runs("WHERE id LIKE ? ESCAPE '\\'", (_prefix_pattern(ref),))
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
