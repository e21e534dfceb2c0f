"""Reading what other processes add to the journal, from high-water marks on.

The daemon shows sweeps that a CLI ``run`` in the same home runs: it cannot hear their events,
so it reads them back from the journal (:mod:`orchestrator.daemon.journal_watch`). Every change
it needs leaves an append-only row: a run's creation and each state change, a sweep's state
changes (``transitions``, by ``id``), and each metric report (``metrics``, by ``rowid``). Both
keys only grow and SQLite has one writer at a time, so everything at or below the largest key
a read sees is committed: a mark is all that needs remembering.

A read covers a window of at most ``limit`` keys per table past each mark (the rows of the
daemon's own sweeps inside it are skipped, but still count), so one read costs the same
however far behind it is; the next read continues. ``PRAGMA data_version`` (:meth:`changed`)
says cheaply whether anything was committed since the last look.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from orchestrator.exceptions import StoreError
from orchestrator.store.journal import LATEST_STATE_COUNTS
from orchestrator.store.rows import RUN_COLUMNS, SWEEP_COLUMNS, RunRow, SweepRow
from orchestrator.store.schema import connect

__all__ = ["JournalTail", "Marks", "MetricRow", "TailBatch", "TransitionRow"]

_MAXIMA = (
    "SELECT (SELECT coalesce(max(id), 0) FROM transitions), "
    "(SELECT coalesce(max(rowid), 0) FROM metrics)"
)
#: Transitions with ``?`` < id <= ``?`` of sweeps not run by process ``?``.
_TRANSITIONS = (
    "SELECT t.id, t.sweep_id, t.run_id, t.from_state, t.to_state, t.reason, t.at "
    "FROM transitions t JOIN sweeps s ON s.id = t.sweep_id "
    "WHERE t.id > ? AND t.id <= ? AND s.pid IS NOT ? ORDER BY t.id"
)
#: Metric reports with ``?`` < rowid <= ``?`` of runs of sweeps not run by process ``?``.
_METRICS = (
    "SELECT m.rowid, m.run_id, r.sweep_id, r.idx, m.name, m.step, m.value, m.at "
    "FROM metrics m JOIN runs r ON r.id = m.run_id JOIN sweeps s ON s.id = r.sweep_id "
    "WHERE m.rowid > ? AND m.rowid <= ? AND s.pid IS NOT ? ORDER BY m.rowid"
)
_RUNS = f"SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({{marks}})"
_SWEEPS = f"SELECT {SWEEP_COLUMNS} FROM sweeps WHERE id IN ({{marks}})"
_OUTPUTS = "SELECT run_id, name, value FROM outputs WHERE run_id IN ({marks})"
#: Ids per ``IN (...)`` (a read's window bounds how many there are).
_CHUNK = 500


class Marks(NamedTuple):
    """The largest transition id and metric rowid already read."""

    transition: int
    metric: int


class TransitionRow(NamedTuple):
    id: int
    sweep_id: str
    #: None: the sweep's own state changed.
    run_id: str | None
    previous: str | None
    state: str
    reason: str | None
    at: float


class MetricRow(NamedTuple):
    rowid: int
    run_id: str
    sweep_id: str
    idx: int
    name: str
    step: int | None
    value: float
    at: float


@dataclass
class TailBatch:
    """What one read found, in commit order per table, and what it refers to."""

    marks: Marks
    transitions: list[TransitionRow] = field(default_factory=list)
    metrics: list[MetricRow] = field(default_factory=list)
    #: The runs and sweeps the transitions name (as they are now).
    runs: dict[str, RunRow] = field(default_factory=dict)
    sweeps: dict[str, SweepRow] = field(default_factory=dict)
    #: Outputs of the runs that ended in this batch.
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Counts by state of the sweeps that ended in this batch.
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: More rows wait past the marks (read again without waiting).
    behind: bool = False


class JournalTail:
    """Reads the journal's new rows on a connection of its own (one thread at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.conn = connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the journal at {path}: {exc}") from None
        self._version: int | None = None

    def close(self) -> None:
        self.conn.close()

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the journal at {self.path}: {exc}") from None

    def _of(self, sql: str, ids: list[str]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = tuple(ids[start : start + _CHUNK])
            out += self._rows(sql.format(marks=",".join("?" * len(chunk))), chunk)
        return out

    def changed(self) -> bool:
        """Whether another connection committed since the last call (the first call: True)."""
        version = int(self._rows("PRAGMA data_version", ())[0][0])
        changed, self._version = version != self._version, version
        return changed

    def marks(self) -> Marks:
        """The current maxima: reading from them on skips every row already written."""
        transition, metric = self._rows(_MAXIMA, ())[0]
        return Marks(int(transition), int(metric))

    def read(self, since: Marks, *, skip_pid: int, limit: int) -> TailBatch:
        """The rows past ``since`` (at most ``limit`` keys of each table) of sweeps whose
        process is not ``skip_pid``, with the runs and sweeps they name."""
        top = self.marks()
        upto = Marks(
            min(top.transition, since.transition + limit), min(top.metric, since.metric + limit)
        )
        batch = TailBatch(upto, behind=upto != top)
        if upto.transition > since.transition:
            rows = self._rows(_TRANSITIONS, (since.transition, upto.transition, skip_pid))
            batch.transitions = [TransitionRow(*row) for row in rows]
        if upto.metric > since.metric:
            rows = self._rows(_METRICS, (since.metric, upto.metric, skip_pid))
            batch.metrics = [MetricRow(*row) for row in rows]
        self._refer(batch)
        return batch

    def _refer(self, batch: TailBatch) -> None:
        """Fill in the runs, sweeps, outputs and counts ``batch``'s transitions need."""
        run_ids = sorted({t.run_id for t in batch.transitions if t.run_id is not None})
        batch.runs = {row.id: row for row in map(RunRow.from_db, self._of(_RUNS, run_ids))}
        sweep_ids = sorted({t.sweep_id for t in batch.transitions})
        batch.sweeps = {row.id: row for row in map(SweepRow.from_db, self._of(_SWEEPS, sweep_ids))}
        ended = sorted({t.run_id for t in batch.transitions if t.run_id and t.state == "succeeded"})
        for run_id, name, value in self._of(_OUTPUTS, ended):
            batch.outputs.setdefault(run_id, {})[name] = json.loads(value)
        for t in batch.transitions:
            if t.run_id is None and t.sweep_id not in batch.counts:
                counts = self._rows(LATEST_STATE_COUNTS, (t.sweep_id, t.sweep_id))
                batch.counts[t.sweep_id] = {str(state): int(n) for state, n in counts}
