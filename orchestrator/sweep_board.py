"""What the web page's sweep list adds to each sweep: how many runs are done, what it
optimises, its best run so far, whether a process runs it now, and whether a daemon ran it.

The objective is the CLI's (:func:`orchestrator.history.objective_of` of the sweep's spec,
read again as ``resume`` reads it); the best run is judged as the CLI's "best run" line judges
it (an output of that name first, else the metric's last report). Spec loads and the best of
a finished sweep are kept (bounded): a page polling the list of 200 sweeps reads neither again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Container, Hashable
from typing import Any, TypeVar

from orchestrator.engine.states import SWEEP_UNFINISHED, TERMINAL
from orchestrator.exceptions import OrchestratorError
from orchestrator.history import Objective, objective_of, sweep_item, sweep_source
from orchestrator.procinfo import is_same_process
from orchestrator.store.journal import NODE_STATE_COUNTS
from orchestrator.store.rows import SweepRow
from orchestrator.store.series import SeriesReader

__all__ = ["Board", "best_of", "is_live"]

_V = TypeVar("_V")
_MISSING = object()
#: Entries each memo keeps (a few per sweep listed).
MEMO = 4096
_ENDED = frozenset(state.value for state in TERMINAL)


class _Memo:
    """A bounded least-recently-used map, safe to share between worker threads."""

    def __init__(self, size: int = MEMO) -> None:
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._items.get(key, _MISSING)
            if value is not _MISSING:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: _V) -> _V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


def is_live(row: SweepRow, here: Container[str]) -> bool:
    """A process runs the sweep now: this daemon (``here``: the sweeps it runs), or the one
    the journal names, still alive (a CLI ``run`` in the same home)."""
    if row.state not in {state.value for state in SWEEP_UNFINISHED}:
        return False
    return row.id in here or is_same_process(row.pid, row.pid_start)


def best_of(values: list[tuple[int, str, float]], objective: Objective) -> dict[str, Any] | None:
    """The best of (index, run id, value), the first of equals; None when there is none."""
    if not values:
        return None
    sign = -1.0 if objective.optimization == "maximize" else 1.0
    index, run_id, value = min(values, key=lambda item: sign * item[2])
    return {"index": index, "run": run_id, "value": value}


class Board:
    """The extra fields of each sweep of the list (see the module's docstring)."""

    def __init__(self) -> None:
        self._objectives = _Memo()
        #: Counts by state and best run of each sweep no process runs.
        self._judged = _Memo()

    def objective(self, row: SweepRow) -> Objective | None:
        """What the sweep's spec optimises; None when it says nothing, or its spec cannot be
        read again (a file since removed or broken; a URL is never fetched for this)."""
        key = (row.id, row.component_hash, row.spec_path)
        known = self._objectives.get(key)
        if known is not _MISSING:
            return known  # type: ignore[no-any-return]
        found = None
        remote = (row.spec_path or "").startswith(("http://", "https://"))
        if row.spec_text is not None or not remote:
            try:
                found = objective_of(sweep_source(row).operation.matrix)
            except (OrchestratorError, OSError, ValueError):
                found = None
        return self._objectives.put(key, found)

    @staticmethod
    def _judge(
        reader: SeriesReader, row: SweepRow, objective: Objective | None
    ) -> tuple[dict[str, int], dict[str, Any] | None]:
        """A sweep's counts by state (a pipeline's: of its nodes, as ``ls`` counts them) and
        its best run."""
        sweep_id = row.id
        if row.kind == "dag":
            nodes = reader.conn.execute(NODE_STATE_COUNTS, (sweep_id,))
            return {str(state): int(n) for state, n in nodes}, None
        counts = reader.state_counts(sweep_id)
        if objective is None:
            return counts, None
        return counts, best_of(reader.objective_values(sweep_id, objective.metric), objective)

    def item(self, reader: SeriesReader, row: SweepRow, here: Container[str]) -> dict[str, Any]:
        """One sweep of the list: :func:`~orchestrator.history.sweep_item` (as ``ls --json``
        has it) and ``done``, ``objective``, ``best``, ``live``, ``via_daemon``. Reads with
        ``reader``: call it from a worker thread. What a sweep no process runs was counted
        and judged once (its state and end time are in the key: a resume reads them again)."""
        live = is_live(row, here)
        objective = self.objective(row)
        key = (row.id, row.state, row.finished_at, objective)
        known: Any = _MISSING if live else self._judged.get(key)
        if known is _MISSING:
            known = self._judge(reader, row, objective)
            if not live:
                self._judged.put(key, known)
        counts, best = known
        return sweep_item(row, counts) | {
            "done": sum(n for state, n in counts.items() if state in _ENDED),
            "objective": None
            if objective is None
            else {"metric": objective.metric, "goal": objective.optimization},
            "best": best,
            "live": live,
            "via_daemon": row.via_daemon,
        }
