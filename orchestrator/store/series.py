"""Reads for the web page: each run's metric series (thinned), the metric names of a sweep, and
the one value per run a sweep's objective is judged by.

Kept apart from :class:`~orchestrator.store.journal.Journal` because these run on a connection
of their own (:func:`open_reader`), in a worker thread: a sweep of 10,000 runs reporting 100
times each is a million rows, and reading them must not hold the daemon's event loop. Each
query's text is here and only here.

Measured on 10,000 runs x 100 reports (``benchmarks/bench_web_api.py``): one query per run,
in the order the index ``metrics_by_run`` already keeps, reads a sweep's series in about half
the time of one join over its runs, and far faster than thinning in SQL with window functions
(which sort every row); so the rows are thinned in Python as they arrive (:func:`kept`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.exceptions import StoreError
from orchestrator.store.journal import _LATEST, LATEST_STATE_COUNTS
from orchestrator.store.schema import connect

__all__ = ["Series", "SeriesReader", "kept", "open_reader", "thinned"]

#: Ids of the newest attempt of each configuration of sweep ``?`` (bound twice), with their
#: index: the runs a sweep's page shows.
_LATEST_RUNS = f"SELECT r.id, r.idx FROM runs r {_LATEST}"

#: Index and id of the newest attempt of each configuration of sweep ``?`` (bound twice), in
#: index order: the runs a sweep's page shows.
_SWEEP_RUNS = f"{_LATEST_RUNS} ORDER BY r.idx"

#: One run's reports of metric ``?``: step, value, in report order, which the index
#: ``metrics_by_run`` (run_id, name, then rowid) already keeps (nothing is sorted). One query
#: per run and name: a join over a sweep's runs reads the same rows about twice as slowly.
_RUN_REPORTS = "SELECT step, value FROM metrics WHERE run_id = ? AND name = ? ORDER BY rowid"

#: How many reports of metric ``?`` one run made (counted in the index alone).
_RUN_COUNT = "SELECT count(*) FROM metrics WHERE run_id = ? AND name = ?"

#: The rowids of one run's reports of metric ``?``, in report order (the index alone).
_RUN_ROWIDS = "SELECT rowid FROM metrics WHERE run_id = ? AND name = ? ORDER BY rowid"

#: The reports with the rowids ``{marks}``: step, value, in report order.
_REPORTS_AT = "SELECT step, value FROM metrics WHERE rowid IN ({marks}) ORDER BY rowid"
#: Rowids per :data:`_REPORTS_AT` (SQLite bounds the parameters of one statement).
_CHUNK = 500

#: The names one run reported.
_RUN_NAMES = "SELECT DISTINCT name FROM metrics WHERE run_id = ? ORDER BY name"

#: The names the newest runs of sweep ``?`` reported (bound twice), found one at a time by a
#: seek per run in ``metrics_by_run`` (the next name after the last one found), never by
#: reading every report.
_NAMES = (
    f"WITH RECURSIVE wanted AS ({_LATEST_RUNS}), found(name) AS ("
    "SELECT (SELECT min(m.name) FROM metrics m WHERE m.run_id IN (SELECT id FROM wanted)) "
    "UNION ALL SELECT (SELECT min(m.name) FROM metrics m WHERE m.run_id IN "
    "(SELECT id FROM wanted) AND m.name > found.name) FROM found WHERE found.name IS NOT NULL"
    ") SELECT name FROM found WHERE name IS NOT NULL"
)

#: For the newest run of each configuration of a sweep: its index, id, its output ``?`` (JSON)
#: and its last report of the metric ``?`` (then the sweep, twice). The output wins, as it
#: does in the CLI's "best run" line.
_OBJECTIVE = (
    "SELECT r.idx, r.id, "
    "(SELECT o.value FROM outputs o WHERE o.run_id = r.id AND o.name = ?), "
    "(SELECT m.value FROM metrics m WHERE m.run_id = r.id AND m.name = ? "
    "ORDER BY m.rowid DESC LIMIT 1) "
    f"FROM runs r {_LATEST} ORDER BY r.idx"
)


#: One point of a series: step, value (a tuple: the row as SQLite returns it).
_Point = tuple[Any, ...]


def kept(count: int, k: int) -> list[int]:
    """Which reports of a series of ``count`` survive thinning to at most ``k`` (``k >= 2``):
    every one when they fit, else ``k`` evenly spaced ones, the first and the last among
    them (report ``i`` stands for bucket ``i * (k - 1) // (count - 1)``; the first report
    of each bucket is kept)."""
    if count <= k:
        return list(range(count))
    span = count - 1
    return [i for i in range(count) if i == 0 or i * (k - 1) // span > (i - 1) * (k - 1) // span]


def thinned(points: list[_Point], k: int) -> list[_Point]:
    """``points`` thinned to at most ``k`` (see :func:`kept`)."""
    if len(points) <= k:
        return points
    return [points[i] for i in kept(len(points), k)]


def open_reader(path: Path) -> sqlite3.Connection:
    """A read connection of its own to the journal at ``path`` (WAL: it never blocks the
    writer, and sees every committed write)."""
    try:
        return connect(path)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open the journal at {path}: {exc}") from None


#: Name → run index → points.
Series = dict[str, dict[int, list[_Point]]]


class SeriesReader:
    """The web page's reads on one connection (not shared between threads: whoever calls it
    from several threads holds a lock around it)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the journal at {self.path}: {exc}") from None

    def sweep_series(self, sweep_id: str, names: Sequence[str] | None, k: int) -> Series:
        """Name → run index → ``[[step, value], ...]`` of the newest run of each
        configuration, at most ``k`` points per run and name (``names`` None: every name).
        A report without a step gets its ordinal in the series (0, 1, 2...)."""
        wanted = self.metric_names(sweep_id) if names is None else list(names)
        out: Series = {name: {} for name in wanted}
        for run_id, idx in self._rows(_SWEEP_RUNS, (sweep_id, sweep_id)):
            self._add_run(out, run_id, int(idx), k)
        return {name: runs for name, runs in out.items() if runs}

    def run_series(self, run_id: str, index: int, names: Sequence[str] | None, k: int) -> Series:
        """Like :meth:`sweep_series` for one run (``index`` its key)."""
        wanted = names if names is not None else [n for (n,) in self._rows(_RUN_NAMES, (run_id,))]
        out: Series = {name: {} for name in wanted}
        self._add_run(out, run_id, index, k)
        return {name: runs for name, runs in out.items() if runs}

    def _add_run(self, out: Series, run_id: str, idx: int, k: int) -> None:
        """Each of ``out``'s names for one run (fetched as tuples: the rows are the points).
        A series longer than ``k`` is thinned in the index: only the reports kept are read
        from the table."""
        for name, runs in out.items():
            count = self._rows(_RUN_COUNT, (run_id, name))[0][0]
            if not count:
                continue
            if count <= k:
                points = self._rows(_RUN_REPORTS, (run_id, name))
                ordinals: Sequence[int] = range(len(points))
            else:
                rowids = self._rows(_RUN_ROWIDS, (run_id, name))
                ordinals = kept(len(rowids), k)
                chosen = [rowids[i][0] for i in ordinals]
                points = []
                for start in range(0, len(chosen), _CHUNK):
                    chunk = chosen[start : start + _CHUNK]
                    sql = _REPORTS_AT.format(marks=",".join("?" * len(chunk)))
                    points += self._rows(sql, chunk)
            if any(step is None for step, _ in points):  # its ordinal in the series instead
                pairs = zip(ordinals, points, strict=True)
                points = [(i if step is None else step, value) for i, (step, value) in pairs]
            runs[idx] = points

    def state_counts(self, sweep_id: str) -> dict[str, int]:
        """How many configurations have their newest run in each state."""
        rows = self._rows(LATEST_STATE_COUNTS, (sweep_id, sweep_id))
        return {str(state): int(n) for state, n in rows}

    def metric_names(self, sweep_id: str) -> list[str]:
        """Every metric name the newest runs of a sweep reported, sorted."""
        return [str(name) for (name,) in self._rows(_NAMES, (sweep_id, sweep_id))]

    def objective_values(self, sweep_id: str, name: str) -> list[tuple[int, str, float]]:
        """Index, run id and value of ``name`` (an output, else the last report of that metric)
        for each newest run that has a number for it, in index order."""
        out = []
        for idx, run_id, output, metric in self._rows(_OBJECTIVE, (name, name, sweep_id, sweep_id)):
            value = json.loads(output) if output is not None else metric
            if isinstance(value, int | float) and not isinstance(value, bool):
                out.append((int(idx), str(run_id), float(value)))
        return out
