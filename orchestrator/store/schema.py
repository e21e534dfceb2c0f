"""The journal's tables, and how a connection to its SQLite file is opened.

Kept apart from :class:`~orchestrator.store.journal.Journal` so that the shape of the file
(every table and index) and the settings every connection needs (WAL, ``synchronous=NORMAL``,
a busy timeout) are read in one place, not between the writer's and the readers' code.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

__all__ = ["SCHEMA", "connect"]

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


def connect(path: Path, schema: bool = False) -> sqlite3.Connection:
    """Open with WAL (``schema``: and create the tables if missing); retried while another
    process is creating the same journal (switching to WAL and creating tables take locks that
    SQLite's busy handler does not always wait on)."""
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
