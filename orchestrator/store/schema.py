"""The journal's tables, its version, and how a connection to its SQLite file is opened.

Kept apart from :class:`~orchestrator.store.journal.Journal` so that the shape of the file
(every table and index), its version and migrations, and the settings every connection needs
(WAL, ``synchronous=NORMAL``, a busy timeout) are read in one place, not between the writer's
and the readers' code.

The version is SQLite's ``PRAGMA user_version``. A new journal gets :data:`SCHEMA` and
:data:`SCHEMA_VERSION`; an older one is brought up by :data:`MIGRATIONS`, in order, in one
transaction with the version bump (a crash leaves it as it was); a journal written by a newer
orchestrator is refused, never read with a schema this code does not know.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

from orchestrator.exceptions import StoreError

__all__ = ["MIGRATIONS", "SCHEMA", "SCHEMA_VERSION", "connect"]

_V1 = """
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
-- The newest attempt of each configuration of a sweep (``ls``, ``show``, resume): found in
-- this index instead of one lookup per run. Created here, so a journal written before it
-- existed gets it the next time it is opened.
CREATE INDEX IF NOT EXISTS runs_latest ON runs (sweep_id, params_hash, created_at);
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
-- What each run was given of the machine (its latest attempt's GPUs, CPUs, memory; JSON).
CREATE TABLE IF NOT EXISTS resources (run_id TEXT PRIMARY KEY, assignment TEXT NOT NULL);
-- What an adaptive search suggested for each run index: the raw configuration, where it sits
-- in the search (JSON: bracket/rung, iteration) and the index of the run it continues, so a
-- resumed search is rebuilt from its own history.
CREATE TABLE IF NOT EXISTS suggestions (
    sweep_id TEXT NOT NULL, idx INTEGER NOT NULL, params TEXT NOT NULL, place TEXT NOT NULL,
    resumes INTEGER, PRIMARY KEY (sweep_id, idx)
);
CREATE TABLE IF NOT EXISTS writer_probe (id INTEGER PRIMARY KEY, at REAL);
"""

_V2 = """
-- Where each invocation of a sweep ran (code, interpreter, packages, host...), and the large
-- texts it refers to (a diff, a package list, an environment), stored once by content hash.
CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS provenance (
    sweep_id TEXT NOT NULL, at REAL NOT NULL, record TEXT NOT NULL, PRIMARY KEY (sweep_id, at)
);
-- The environment a run's spec gave it (its rendered ``env``), when it gave one.
CREATE TABLE IF NOT EXISTS run_env (run_id TEXT PRIMARY KEY, env TEXT NOT NULL);
"""

_V3 = """
-- The kernel's accounting of each run's process (wait4): CPU seconds, peak RSS in bytes.
CREATE TABLE IF NOT EXISTS usage (run_id TEXT PRIMARY KEY, cpu_s REAL, max_rss INTEGER);
"""

_V4 = """
-- A pipeline (``run.kind: dag``) is a sweep whose nodes are sweeps of their own: each node's
-- sweep names the pipeline's sweep and its operation's name; a hook's run, the sweep it
-- followed.
ALTER TABLE sweeps ADD COLUMN parent_id TEXT;
ALTER TABLE sweeps ADD COLUMN node TEXT;
CREATE INDEX IF NOT EXISTS sweeps_by_parent ON sweeps (parent_id);
-- Where a run was sent when it did not run on this machine (a Dask worker): the worker's
-- address and host name, per attempt's latest.
CREATE TABLE IF NOT EXISTS placements (
    run_id TEXT PRIMARY KEY, worker TEXT NOT NULL, host TEXT
);
"""

#: Every table and index of a new journal.
SCHEMA = _V1 + _V2 + _V3 + _V4

#: The journal version this code writes and reads.
SCHEMA_VERSION = 4

#: What brings a journal of version ``v - 1`` to version ``v``, by ``v``. Version 1 is the
#: schema as first versioned: a journal from before (``user_version`` 0) gets the tables and
#: indexes it lacks, as every earlier release created them (``IF NOT EXISTS``). Version 2 adds
#: provenance, version 3 each run's resource usage, version 4 pipelines (a sweep's parent and
#: node) and where runs were placed. A later change adds its statements here
#: and to :data:`SCHEMA`, and bumps :data:`SCHEMA_VERSION`.
MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3, 4: _V4}


def connect(path: Path, schema: bool = False) -> sqlite3.Connection:
    """Open with WAL (``schema``: and create or migrate the tables, see :data:`MIGRATIONS`);
    retried while another process is creating the same journal (switching to WAL and creating
    tables take locks that SQLite's busy handler does not always wait on)."""
    deadline = time.monotonic() + 30
    while True:
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            if schema:  # before switching it to WAL: a newer journal is left as it is
                _refuse_newer(_version(conn), path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if schema:
                _bring_up(conn, path)
            return conn
        except BaseException as exc:
            conn.close()
            locked = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
            if not locked or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _refuse_newer(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer orchestrator (journal version {version}; this one "
            f"reads up to {SCHEMA_VERSION}): upgrade orchestrator to use this home"
        )


def _bring_up(conn: sqlite3.Connection, path: Path) -> None:
    """Create a new journal, or migrate an older one to :data:`SCHEMA_VERSION` (in one
    transaction, taken with the write lock so two processes never both migrate); refuse one
    written by a newer orchestrator."""
    if _version(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _version(conn)  # another process may have migrated it meanwhile
        _refuse_newer(version, path)
        fresh = not conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone()
        steps = (
            {SCHEMA_VERSION: SCHEMA}
            if fresh
            else {v: MIGRATIONS[v] for v in range(version + 1, SCHEMA_VERSION + 1)}
        )
        for target, script in steps.items():
            for statement in _statements(script):
                if not _adds_existing_column(conn, statement):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target:d}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


_ADD_COLUMN = re.compile(r"^ALTER TABLE (\w+) ADD COLUMN (\w+)", re.IGNORECASE | re.MULTILINE)


def _adds_existing_column(conn: sqlite3.Connection, statement: str) -> bool:
    """Whether ``statement`` adds a column the table already has (SQLite has no ``ADD COLUMN
    IF NOT EXISTS``; a journal of version 0 may come from a release that had the column), so
    every step of a migration can be applied again."""
    match = _ADD_COLUMN.search(statement)
    if match is None:
        return False
    table, column = match.groups()
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def _statements(script: str) -> list[str]:
    """``script`` split into whole SQL statements (``executescript`` would commit the open
    transaction first)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return [statement for statement in statements if statement]
