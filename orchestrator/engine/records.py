"""Plain data of a sweep: its runs, what a resume carries over, its result, its limits.

Imported by the controller, the plugin context, the read model and the daemon, without
pulling in the controller itself.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from orchestrator.engine.states import RunState, SweepState
from orchestrator.executors.base import StopRequest
from orchestrator.spec.resolve import Plan, RunSpec
from orchestrator.store.rows import RUN_COLUMNS, RunRow

if TYPE_CHECKING:
    from orchestrator.store.journal import Journal

__all__ = [
    "STDERR_TAIL",
    "JournalRuns",
    "Limits",
    "Resume",
    "RunRecord",
    "SweepResult",
    "record_from_row",
]

#: Stderr lines kept per run to show when it fails.
STDERR_TAIL = 20


@dataclass
class RunRecord:
    id: str
    index: int
    spec: RunSpec
    state: RunState = RunState.CREATED
    reason: str | None = None
    exit_code: int | None = None
    attempt: int = 1
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL))
    stop: StopRequest | None = None
    #: The run whose results a cache hit reused.
    cached_from: str | None = None
    #: Its ``termination.timeout`` expired (it ends failed, reason ``timeout``).
    timed_out: bool = False
    #: What it was given of the machine (devices, CPUs, memory), as journaled; None when it
    #: asked for nothing.
    resources: dict[str, Any] | None = None
    #: Where it sits in an adaptive search (bracket and rung, iteration); None otherwise.
    place: dict[str, Any] | None = None
    #: The run whose outputs it continues from (hyperband's ``resume``).
    resumes_from: str | None = None
    #: What an adaptive search suggested for it, as journaled (``params``, ``place``,
    #: ``resumes``: an index); its start line carries it, for recovery (see ``job_for``).
    suggested: dict[str, Any] | None = None
    #: The kernel's accounting of its process: CPU seconds (user + system), peak RSS bytes.
    cpu_s: float | None = None
    max_rss: int | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at


@dataclass(frozen=True)
class Limits:
    """``termination`` (per run; the operation's fields override the component's) and the
    sweep's time budget."""

    timeout: float | None = None
    max_retries: int = 0
    ttl: float | None = None
    max_time: float | None = None

    @classmethod
    def of(cls, plan: Plan, max_time: float | None = None) -> Limits:
        op, comp = plan.spec.operation.termination, plan.spec.component.termination

        def pick(name: str) -> Any:
            for section in (op, comp):
                value = getattr(section, name, None) if section is not None else None
                if value is not None:
                    return value
            return None

        return cls(pick("timeout"), pick("max_retries") or 0, pick("ttl"), max_time)


@dataclass
class Resume:
    """Continue an existing sweep: which configurations to leave alone, which to run."""

    sweep_id: str
    #: The newest run of each configuration already journaled.
    previous: list[RunRecord]
    #: Run only configurations whose params hash is here (``rerun --failed``); None: all.
    only: set[str] | None = None
    _done: set[str] = field(init=False, repr=False)
    _attempts: dict[str, int] = field(init=False, repr=False)

    @property
    def succeeded(self) -> set[str]:
        return {r.spec.params_hash for r in self.previous if r.state is RunState.SUCCEEDED}

    def wants(self, spec: RunSpec) -> bool:
        """Run this configuration again? Never one that succeeded; with ``only``, just those."""
        key = spec.params_hash
        return key not in self._done and (self.only is None or key in self.only)

    def attempt(self, spec: RunSpec) -> int:
        """The attempt number a new run of this configuration gets."""
        return self._attempts.get(spec.params_hash, 0) + 1

    def merged(self, runs: list[RunRecord]) -> list[RunRecord]:
        """Every configuration's newest run: earlier invocations' and ``runs`` (this one's)."""
        rerun = {r.spec.params_hash for r in runs}
        kept = [r for r in self.previous if r.spec.params_hash not in rerun]
        return sorted(kept + runs, key=lambda r: (r.index, r.created_at))

    def __post_init__(self) -> None:
        self._done = self.succeeded
        self._attempts = {r.spec.params_hash: r.attempt for r in self.previous}


class JournalRuns(Sequence[RunRecord]):
    """A sweep's newest run of each configuration, read from the journal a page at a time
    as it is looked at (a sweep too big to keep its finished runs in memory)."""

    PAGE = 1000

    def __init__(self, journal: Journal, sweep_id: str) -> None:
        self.journal = journal
        self.sweep_id = sweep_id
        self._len: int | None = None

    def __len__(self) -> int:
        if self._len is None:
            self._len = sum(self.journal.latest_state_counts(self.sweep_id).values())
        return self._len

    def _page(self, offset: int) -> list[RunRecord]:
        return self._records(self.journal.latest_runs(self.sweep_id, limit=1, offset=offset))

    def _records(self, rows: list[RunRow]) -> list[RunRecord]:
        return records_from_rows(self.journal, rows)

    def __iter__(self) -> Iterator[RunRecord]:
        """Every run in matrix order, a page at a time, each page found from where the last
        ended (an OFFSET would skip every earlier run again: 35 s for 50,000 runs)."""
        after: tuple[int, float, str] = (-1, float("-inf"), "")
        while True:
            rows = latest_runs_after(self.journal, self.sweep_id, after, self.PAGE)
            yield from self._records(rows)
            if len(rows) < self.PAGE:
                return
            last = rows[-1]
            after = (last.idx, last.created_at or 0.0, last.id)

    @overload
    def __getitem__(self, index: int) -> RunRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[RunRecord]: ...
    def __getitem__(self, index: int | slice) -> RunRecord | list[RunRecord]:
        if isinstance(index, slice):
            return list(self)[index]
        position = index + len(self) if index < 0 else index
        page = self._page(position) if 0 <= position < len(self) else []
        if not page:
            raise IndexError(index)
        return page[0]


#: A page of the newest runs after a (idx, created_at, id) key, in that order. The newest
#: attempt of each configuration is found through the ``runs_latest`` index per row; rows are
#: walked through ``runs_by_sweep`` from the key on, so each page costs its own rows only.
_LATEST_AFTER = (
    f"SELECT {', '.join(f'r.{c.strip()}' for c in RUN_COLUMNS.split(','))} FROM runs r "
    "WHERE r.sweep_id = ? AND (r.idx, r.created_at, r.id) > (?, ?, ?) "
    "AND r.created_at = (SELECT max(l.created_at) FROM runs l "
    "WHERE l.sweep_id = r.sweep_id AND l.params_hash = r.params_hash) "
    "ORDER BY r.idx, r.created_at, r.id LIMIT ?"
)


def latest_runs_after(
    journal: Journal, sweep_id: str, after: tuple[int, float, str], limit: int
) -> list[RunRow]:
    """``journal.latest_runs`` as keyset pages: the ``limit`` newest runs of configurations
    that come after ``after`` (idx, created_at, id) in matrix order. (A read-only query of the
    journal's; it belongs in ``Journal`` once that module is free to change.)"""
    rows = journal._query(_LATEST_AFTER, (sweep_id, *after, limit))
    return [RunRow.from_db(row) for row in rows]


@dataclass
class SweepResult:
    sweep_id: str
    state: SweepState
    reason: str | None
    #: Every configuration's newest run (read from the journal on demand in a big sweep).
    runs: Sequence[RunRecord]
    #: Why a journal write of the sweep was lost (None: the journal holds all of it).
    journal_error: str | None = None


def records_from_rows(journal: Journal, rows: list[RunRow]) -> list[RunRecord]:
    """Journaled runs as records, with their outputs, last metrics, resources and where they
    sit in an adaptive search."""
    ids = [row.id for row in rows]
    outputs, metrics = journal.outputs_of(ids), journal.last_metrics(ids)
    given = journal.resources_of(ids)
    places = {
        sweep: journal.places_of(sweep, (r.idx for r in rows if r.sweep_id == sweep))
        for sweep in {row.sweep_id for row in rows}
    }
    usage = journal.usage_of(ids)
    records = [
        record_from_row(
            r,
            outputs.get(r.id),
            metrics.get(r.id),
            given.get(r.id),
            places[r.sweep_id].get(r.idx),
        )
        for r in rows
    ]
    for record in records:
        record.cpu_s, record.max_rss = usage.get(record.id, (None, None))
    return records


def record_from_row(
    row: RunRow,
    outputs: dict[str, object] | None = None,
    metrics: dict[str, float] | None = None,
    resources: dict[str, Any] | None = None,
    place: dict[str, Any] | None = None,
) -> RunRecord:
    """A journaled run as a record (env and working folder are not journaled: left empty)."""
    spec = RunSpec(
        index=row.idx,
        uuid=row.id,
        params=dict(row.params),
        argv=list(row.argv),
        env={},
        working_dir=None,
        config_hash=row.config_hash or "",
        params_hash=row.params_hash or "",
    )
    return RunRecord(
        id=row.id,
        index=row.idx,
        spec=spec,
        state=RunState(row.state),
        reason=row.reason,
        exit_code=row.exit_code,
        attempt=row.attempt,
        created_at=row.created_at or 0.0,
        started_at=row.started_at,
        finished_at=row.finished_at,
        metrics=dict(metrics or {}),
        outputs=dict(outputs or {}),
        resources=resources,
        place=place,
    )
