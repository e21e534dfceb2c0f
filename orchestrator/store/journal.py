"""The journal: one SQLite file (WAL) recording sweeps, runs, every transition, metrics, outputs.

:class:`Journal` is the store's one door: its named writes turn what happened into *records*
(the statements of one write, committed together or not at all) and queue them for the writer
thread (:mod:`orchestrator.store.writer`, which also says what happens when a write fails and
how durable records are awaited); its named reads return typed rows
(:mod:`orchestrator.store.rows`) from their own connection, which sees every committed write.
No SQL is written outside the store; the tables are in :mod:`orchestrator.store.schema`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from orchestrator.exceptions import AmbiguousRefError, NotFoundError, StoreError
from orchestrator.procinfo import start_time
from orchestrator.provenance import content_hash
from orchestrator.store.rows import (
    RUN_COLUMNS,
    SWEEP_COLUMNS,
    CleanupRow,
    OpenMappingRow,
    RunRow,
    SuggestionRow,
    SweepRow,
)
from orchestrator.store.schema import connect
from orchestrator.store.writer import JournalWriter

__all__ = ["LATEST_STATE_COUNTS", "NODE_STATE_COUNTS", "Journal"]


#: How :class:`Journal` opens its connections: a name of this module, so that a test can open
#: journals whose writes fail (``tests/journal_faults.py``).
_connect = connect

#: Ids per ``IN (...)`` read (SQLite limits the number of parameters of one statement).
_CHUNK = 500
#: ``LIKE`` wildcards and the escape character itself, escaped: an id prefix matches literally.
_LIKE_ESCAPES = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


#: The newest attempt of each configuration of sweep ``?`` (bound twice) as ``r``: a join
#: on the ``runs_latest`` index (one lookup per configuration, not a subquery per run). A
#: configuration is its ``params_hash``; attempts created at the same instant are all kept.
_LATEST = (
    "JOIN (SELECT params_hash, max(created_at) AS newest FROM runs WHERE sweep_id = ? "
    "GROUP BY params_hash) latest ON r.params_hash = latest.params_hash "
    "AND r.created_at = latest.newest WHERE r.sweep_id = ?"
)


#: How many configurations of sweep ``?`` (bound twice) have their newest run in each state:
#: each configuration's newest attempt first, then that run looked up in ``runs_latest``
#: (``CROSS JOIN`` keeps that order; :data:`_LATEST`'s would build an index per query: three
#: times slower on 10,000 runs).
LATEST_STATE_COUNTS = (
    "SELECT r.state, count(*) FROM (SELECT params_hash, max(created_at) AS newest FROM runs "
    "WHERE sweep_id = ? GROUP BY params_hash) latest CROSS JOIN runs r ON r.sweep_id = ? "
    "AND r.params_hash = latest.params_hash AND r.created_at = latest.newest "
    "GROUP BY r.state ORDER BY r.state"
)

#: How many of pipeline ``?``'s nodes are in each state (its hooks' runs are not nodes).
NODE_STATE_COUNTS = (
    "SELECT state, count(*) FROM sweeps WHERE parent_id = ? AND node NOT LIKE 'hook:%' "
    "GROUP BY state ORDER BY state"
)


def _qualified(table: str, columns: str) -> str:
    """``a, b`` as ``t.a, t.b`` (a join names every column's table)."""
    return ", ".join(f"{table}.{c.strip()}" for c in columns.split(","))


#: The large parts of a provenance record, stored once each in ``blobs``.
_BLOBS = ("diff", "packages", "environment")


def _prefix_pattern(prefix: str) -> str:
    """The pattern of ``LIKE ? ESCAPE '\\'`` for ids starting with ``prefix`` (literally)."""
    return prefix.translate(_LIKE_ESCAPES) + "%"


class Journal(JournalWriter):
    """Append-mostly record of everything a sweep did: its named writes and reads are here;
    queueing, flushing, :meth:`commit` and the writer's health come from
    :class:`~orchestrator.store.writer.JournalWriter`."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # a new home is private
            self._read = _connect(path, schema=True)
            write = _connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the journal at {path}: {exc}") from None
        #: The sweep of each run journaled here that has not ended (metrics, outputs and
        #: cleanups name only the run).
        self._owners: dict[str, str] = {}
        #: The last value, text and hash of each large part of a provenance record.
        self._last_blobs: dict[str, tuple[str | dict[str, str], str, str]] = {}
        super().__init__(path, write)

    def close(self) -> None:
        """Stop the writer (see :meth:`JournalWriter.close`), then close the readers'
        connection."""
        super().close()
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
        parent_id: str | None = None,
        node: str | None = None,
    ) -> None:
        """A new sweep, ``created``; ``daemon_spec`` (spec text, base folder) lets a restarted
        daemon resume it; ``parent_id``/``node``: a pipeline's node (or a hook's run) and
        the sweep it belongs to. Durable: its commit syncs the WAL (the sweep is accepted)."""
        now = time.time()
        text, base = daemon_spec if daemon_spec is not None else (None, None)
        statement = (
            "INSERT INTO sweeps (id, name, description, tags, spec_path, kind, total, "
            "concurrency, state, created_at, started_at, pid, seed, pid_start, overrides, "
            "component_hash, spec_text, base_dir, via_daemon, parent_id, node) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'created', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                parent_id,
                node,
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

    def add_provenance(
        self, sweep_id: str, record: Mapping[str, Any], at: float | None = None
    ) -> None:
        """Where this invocation of a sweep runs (:class:`~orchestrator.provenance
        .Provenance` as a dict): its diff, package list and environment go to ``blobs`` once
        each by content hash; the runs it creates from ``at`` (default: now) ran with it.
        Never fails its sweep: it comes while the sweep runs, and a write the disk refuses
        (full) is kept and tried again until it has room, like a sweep's end. A record for
        the same ``at`` replaces it (the collected record replaces the part known at once,
        :func:`~orchestrator.provenance.known_at_once`)."""
        small = dict(record)
        when = time.time() if at is None else at
        statements: list[tuple[str, tuple[Any, ...]]] = []
        for name in _BLOBS:
            value = small.pop(name, None)
            if value is None:
                small[f"{name}_hash"] = None
                continue
            text, digest = self._blob(name, value)
            small[f"{name}_hash"] = digest
            statements.append(
                ("INSERT OR IGNORE INTO blobs (hash, text) VALUES (?, ?)", (digest, text))
            )
        statements.append(
            (
                "INSERT OR REPLACE INTO provenance (sweep_id, at, record) VALUES (?, ?, ?)",
                (sweep_id, when, json.dumps(small)),
            )
        )
        self._add(*statements, sweep=None, retry=f"provenance:{sweep_id}:{when!r}")

    def _blob(self, name: str, value: str | dict[str, str]) -> tuple[str, str]:
        """A large part of a provenance record as stored, and its hash; the last of each
        part is remembered: a sweep journals its record twice (at once, then collected) and
        a daemon's sweeps mostly share their environment and packages."""
        last = self._last_blobs.get(name)
        if last is not None and last[0] == value:
            return last[1], last[2]
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        digest = content_hash(text)
        kept = value if isinstance(value, str) else dict(value)
        self._last_blobs[name] = (kept, text, digest)
        return text, digest

    def newest_provenance_at(self, sweep_id: str) -> float | None:
        """When the sweep's newest invocation with a provenance record started (None: no
        record), without reading the record back."""
        rows = self._query("SELECT MAX(at) FROM provenance WHERE sweep_id = ?", (sweep_id,))
        return rows[0][0] if rows else None

    def provenance_at(self, sweep_id: str, when: float | None) -> dict[str, Any] | None:
        """The provenance a run of ``sweep_id`` created at ``when`` ran with (the sweep's
        invocation that started last before it; the newest when ``when`` is None), with its
        diff, package list and environment read back, and ``at``, when that invocation
        started; None when none was recorded. ``collected`` is False for a record of what
        was known at once, whose code and packages have not come (True for every record
        without the field: collected ones, and those from before it was)."""
        rows = self._query(
            "SELECT at, record FROM provenance WHERE sweep_id = ? AND at <= ? "
            "ORDER BY at DESC LIMIT 1",
            (sweep_id, float("inf") if when is None else when),
        )
        if not rows:
            return None
        record: dict[str, Any] = {"collected": True, **json.loads(rows[0][1]), "at": rows[0][0]}
        for name in _BLOBS:
            digest = record.pop(f"{name}_hash", None)
            text = None
            if digest is not None:
                found = self._query("SELECT text FROM blobs WHERE hash = ?", (digest,))
                text = str(found[0][0]) if found else None
            record[name] = json.loads(text) if name == "environment" and text else text
            record[f"{name}_hash"] = digest
        return record

    def set_run_env(self, run_id: str, env: Mapping[str, str]) -> None:
        """The environment a run's spec gave it (recorded only when it gave one)."""
        self._add(
            (
                "INSERT OR REPLACE INTO run_env (run_id, env) VALUES (?, ?)",
                (run_id, json.dumps(env)),
            ),
            sweep=self._owners.get(run_id),
        )

    def run_env_of(self, run_id: str) -> dict[str, str]:
        rows = self._query("SELECT env FROM run_env WHERE run_id = ?", (run_id,))
        return dict(json.loads(rows[0][0])) if rows else {}

    def set_sweep_total(self, sweep_id: str, total: int) -> None:
        """How many runs the sweep makes, once an adaptive search knows better (a hyperband
        rung left short by failed runs)."""
        self._add(("UPDATE sweeps SET total = ? WHERE id = ?", (total, sweep_id)), sweep=sweep_id)

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

    def add_started_run(
        self,
        run_id: str,
        sweep_id: str,
        index: int,
        params_hash: str,
        run_dir: str,
        params: str = "{}",
    ) -> None:
        """A run that started before its creation reached the journal (its orchestrator died
        in between; crash recovery found it in the exit-status file): created now, with what
        that file says of it (``params`` as JSON text), to be ended as its status says."""
        self.add_run(run_id, sweep_id, index, "", params, "[]", run_dir, params_hash)

    def known_runs(self, run_ids: list[str]) -> set[str]:
        """Which of ``run_ids`` the journal holds."""
        known: set[str] = set()
        for at in range(0, len(run_ids), 500):
            part = run_ids[at : at + 500]
            marks = ",".join("?" * len(part))
            known.update(
                r[0] for r in self._query(f"SELECT id FROM runs WHERE id IN ({marks})", part)
            )
        return known

    def add_suggestion(
        self,
        sweep_id: str,
        index: int,
        params: Mapping[str, Any],
        place: Mapping[str, Any],
        resumes: int | None,
        *,
        replace: bool = True,
    ) -> None:
        """What an adaptive search suggested as run ``index`` (queued before the run itself,
        so the two commit together). ``replace=False``: kept only where the journal has none
        for that index (crash recovery, from a run's start line: the search's own record, if
        it was committed, stays)."""
        conflict = "REPLACE" if replace else "IGNORE"
        self._add(
            (
                f"INSERT OR {conflict} INTO suggestions (sweep_id, idx, params, place, resumes) "
                "VALUES (?, ?, ?, ?, ?)",
                (sweep_id, index, json.dumps(params), json.dumps(place), resumes),
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

    def set_resources(self, run_id: str, assignment: Mapping[str, Any]) -> None:
        """What the run's attempt was given of the machine (an earlier attempt's is replaced)."""
        self._add(
            (
                "INSERT OR REPLACE INTO resources (run_id, assignment) VALUES (?, ?)",
                (run_id, json.dumps(assignment)),
            ),
            sweep=self._owners.get(run_id),
        )

    def set_placement(self, run_id: str, worker: str, host: str | None) -> None:
        """Where the run's attempt was sent off this machine (a Dask worker's address, that
        machine's name); a later attempt's replaces it."""
        self._add(
            (
                "INSERT OR REPLACE INTO placements (run_id, worker, host) VALUES (?, ?, ?)",
                (run_id, worker, host),
            ),
            sweep=self._owners.get(run_id),
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
            raise AmbiguousRefError(f"{ref!r} matches {len(rows)} sweeps; give more characters")
        return rows[0]

    def latest_sweeps(self, limit: int) -> list[SweepRow]:
        """The newest ``limit`` top-level sweeps, newest first (a pipeline's nodes and hooks'
        runs are part of the sweep they belong to)."""
        return self._sweeps("WHERE parent_id IS NULL ORDER BY created_at DESC LIMIT ?", (limit,))

    def children_of(self, parent_id: str) -> list[SweepRow]:
        """The sweeps that belong to ``parent_id`` (a pipeline's nodes, hooks' runs), oldest
        first."""
        return self._sweeps("WHERE parent_id = ? ORDER BY created_at, rowid", (parent_id,))

    def child_state_counts(self, parent_id: str) -> dict[str, int]:
        """How many of a pipeline's nodes are in each state (hooks' runs not counted)."""
        rows = self._query(NODE_STATE_COUNTS, (parent_id,))
        return {str(state): int(n) for state, n in rows}

    def latest_sweep_of_spec(self, spec_path: str) -> str | None:
        """The id of the newest sweep of the spec at ``spec_path`` (None: there is none)."""
        rows = self._query(
            "SELECT id FROM sweeps WHERE spec_path = ? AND parent_id IS NULL "
            "ORDER BY created_at DESC LIMIT 1",
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
            raise AmbiguousRefError(f"{ref!r} matches {len(rows)} runs; give more characters")
        return rows[0]

    def run_at(self, sweep_id: str, index: int) -> RunRow | None:
        """The newest attempt of configuration ``index`` of a sweep (None: no such run)."""
        rows = self._runs(
            "WHERE sweep_id = ? AND idx = ? ORDER BY created_at DESC LIMIT 1", (sweep_id, index)
        )
        return rows[0] if rows else None

    def suggestions_of(self, sweep_id: str) -> list[SuggestionRow]:
        """Every suggestion of an adaptive search, in index order, with the newest run of each
        (None where it never got one)."""
        rows = self._query(
            "SELECT s.idx, s.params, s.place, s.resumes, "
            "(SELECT r.id FROM runs r WHERE r.sweep_id = s.sweep_id AND r.idx = s.idx "
            "ORDER BY r.created_at DESC LIMIT 1) FROM suggestions s WHERE s.sweep_id = ? "
            "ORDER BY s.idx",
            (sweep_id,),
        )
        return [
            SuggestionRow(int(idx), json.loads(params), json.loads(place), resumes, run_id)
            for idx, params, place, resumes, run_id in rows
        ]

    def places_of(self, sweep_id: str, indexes: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Where these run indexes sit in an adaptive search (none for other kinds): read for
        the span they cover, not the whole search (a page of runs asks for its own)."""
        wanted = set(indexes)
        if not wanted:
            return {}
        rows = self._query(
            "SELECT idx, place FROM suggestions WHERE sweep_id = ? AND idx BETWEEN ? AND ?",
            (sweep_id, min(wanted), max(wanted)),
        )
        return {int(idx): json.loads(place) for idx, place in rows if idx in wanted}

    def run_state(self, run_id: str) -> str | None:
        """The state of one run (None: no such run)."""
        rows = self._query("SELECT state FROM runs WHERE id = ?", (run_id,))
        return str(rows[0][0]) if rows else None

    def runs_of(self, sweep_id: str, limit: int | None = None, offset: int = 0) -> list[RunRow]:
        """Every attempt of every configuration of a sweep, in matrix order (``limit`` of
        them from ``offset``: a page)."""
        return self._runs(
            "WHERE sweep_id = ? ORDER BY idx, created_at LIMIT ? OFFSET ?",
            (sweep_id, -1 if limit is None else limit, offset),
        )

    def unfinished_runs(self, sweep_id: str, states: Iterable[str]) -> list[RunRow]:
        """The runs of a sweep in one of ``states`` (the caller says which are unfinished)."""
        wanted = [str(state) for state in states]
        marks = ",".join("?" * len(wanted))
        return self._runs(
            f"WHERE sweep_id = ? AND state IN ({marks}) ORDER BY idx, created_at",
            (sweep_id, *wanted),
        )

    def latest_runs(self, sweep_id: str, limit: int | None = None, offset: int = 0) -> list[RunRow]:
        """The newest run of each configuration of a sweep, in matrix order (``limit`` of
        them from ``offset``: a page)."""
        rows = self._query(
            f"SELECT {_qualified('r', RUN_COLUMNS)} FROM runs r {_LATEST} "
            "ORDER BY r.idx, r.created_at LIMIT ? OFFSET ?",
            (sweep_id, sweep_id, -1 if limit is None else limit, offset),
        )
        return [RunRow.from_db(row) for row in rows]

    def latest_state_counts(self, sweep_id: str) -> dict[str, int]:
        """How many configurations of a sweep have their newest run in each state (counted
        by SQLite, not by reading every run)."""
        rows = self._query(LATEST_STATE_COUNTS, (sweep_id, sweep_id))
        return {str(state): int(n) for state, n in rows}

    def run_count(self, sweep_id: str, *, every_attempt: bool = False) -> int:
        """How many runs a sweep has: its configurations' newest, or every attempt."""
        if every_attempt:
            rows = self._query("SELECT count(*) FROM runs WHERE sweep_id = ?", (sweep_id,))
        else:
            rows = self._query(f"SELECT count(*) FROM runs r {_LATEST}", (sweep_id, sweep_id))
        return int(rows[0][0])

    def due_cleanups(self) -> list[CleanupRow]:
        """``termination.ttl`` removals whose time has come and that are not done yet."""
        rows = self._query(
            "SELECT run_id, path FROM cleanups WHERE done_at IS NULL AND due_at <= ?",
            (time.time(),),
        )
        return [CleanupRow(run_id, path) for run_id, path in rows]

    def _of_runs(self, sql: str, run_ids: list[str]) -> Iterator[tuple[Any, ...]]:
        """The rows of ``sql`` (its ``{marks}``: the ids' placeholders) for ``run_ids``, a
        chunk of ids per query (SQLite bounds the parameters of one statement)."""
        for start in range(0, len(run_ids), _CHUNK):
            chunk = run_ids[start : start + _CHUNK]
            yield from self._query(sql.format(marks=",".join("?" * len(chunk))), chunk)

    def last_metrics(self, run_ids: list[str]) -> dict[str, dict[str, float]]:
        """The last reported value of every metric of each run."""
        out: dict[str, dict[str, float]] = {}
        sql = "SELECT run_id, name, value FROM metrics WHERE run_id IN ({marks}) ORDER BY rowid"
        for run_id, name, value in self._of_runs(sql, run_ids):
            out.setdefault(run_id, {})[name] = value
        return out

    def metric_summary(self, run_id: str) -> dict[str, dict[str, float | int]]:
        """Each metric of one run: its last value, least, greatest, and how many reports."""
        rows = self._query(
            "SELECT name, (SELECT value FROM metrics l WHERE l.run_id = m.run_id AND "
            "l.name = m.name ORDER BY rowid DESC LIMIT 1), min(value), max(value), count(*) "
            "FROM metrics m WHERE run_id = ? GROUP BY name ORDER BY name",
            (run_id,),
        )
        return {
            name: {"last": last, "min": low, "max": high, "reports": count}
            for name, last, low, high, count in rows
        }

    def transitions_of(self, run_id: str) -> list[tuple[str | None, str, str | None, float]]:
        """Every state change of one run, in order: from, to, reason, when."""
        rows = self._query(
            "SELECT from_state, to_state, reason, at FROM transitions WHERE run_id = ? ORDER BY id",
            (run_id,),
        )
        return [(a, str(b), c, float(d)) for a, b, c, d in rows]

    def set_usage(self, run_id: str, cpu_s: float, max_rss: int | None) -> None:
        """What the kernel accounted to the run's process (its last attempt's)."""
        self._add(
            (
                "INSERT OR REPLACE INTO usage (run_id, cpu_s, max_rss) VALUES (?, ?, ?)",
                (run_id, cpu_s, max_rss),
            ),
            sweep=self._owners.get(run_id),
        )

    def usage_of(self, run_ids: list[str]) -> dict[str, tuple[float, int | None]]:
        """CPU seconds and peak RSS bytes of each run that has them."""
        sql = "SELECT run_id, cpu_s, max_rss FROM usage WHERE run_id IN ({marks})"
        return {run_id: (cpu, rss) for run_id, cpu, rss in self._of_runs(sql, run_ids)}

    def resources_of(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """What each run was given of the machine, for the runs that were given something."""
        sql = "SELECT run_id, assignment FROM resources WHERE run_id IN ({marks})"
        return {run_id: json.loads(given) for run_id, given in self._of_runs(sql, run_ids)}

    def placements_of(self, run_ids: list[str]) -> dict[str, tuple[str, str | None]]:
        """Where each run placed off this machine ran its latest attempt: worker, host."""
        sql = "SELECT run_id, worker, host FROM placements WHERE run_id IN ({marks})"
        return {run_id: (worker, host) for run_id, worker, host in self._of_runs(sql, run_ids)}

    def outputs_of(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The outputs of each run, decoded."""
        out: dict[str, dict[str, Any]] = {}
        sql = "SELECT run_id, name, value FROM outputs WHERE run_id IN ({marks})"
        for run_id, name, value in self._of_runs(sql, run_ids):
            out.setdefault(run_id, {})[name] = json.loads(value)
        return out
