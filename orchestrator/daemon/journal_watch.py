"""Sweeps run by another process in the same home (a CLI ``run``), live on the daemon's events.

Another process's events never reach this one, but everything it does is journaled. Every
:data:`POLL_S` the watcher asks SQLite whether anything was committed (``PRAGMA data_version``
on its own connection: no read when nothing was), reads the new rows past its marks
(:class:`~orchestrator.store.tail.JournalTail`) in a worker thread, and publishes them as the
events the engine would have sent: ``SweepStarted``, ``RunCreated``, ``RunStateChanged``,
``MetricReported``, ``SweepFinished`` (no ``LogLine``: a page tails the log files themselves).

Bounded: its marks start at the journal's end when the daemon starts (history is not
replayed); a read covers at most :data:`LIMIT` rows of each table, and while more wait the
next read follows at once, so a huge sweep elsewhere is caught up in steps and never holds
the event loop. The daemon's own sweeps are skipped (they publish their own events).
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import msgspec

from orchestrator.engine.events import (
    Event,
    MetricReported,
    RunCreated,
    RunStateChanged,
    SweepFinished,
    SweepStarted,
)
from orchestrator.engine.states import SWEEP_TERMINAL, TERMINAL, RunState, SweepState
from orchestrator.exceptions import StoreError
from orchestrator.store.tail import JournalTail, Marks, MetricRow, TailBatch, TransitionRow

__all__ = ["LIMIT", "POLL_S", "JournalWatch", "events_of"]

#: Seconds between two looks at the journal.
POLL_S = 0.25
#: Rows of each table one read covers at most.
LIMIT = 1000
#: Events published in one turn of the event loop (a follower's queue holds 2,000).
_BURST = 200


class _Numbers:
    """Each sweep's event sequence numbers (the engine numbers its own the same way)."""

    def __init__(self) -> None:
        self._counters: dict[str, Iterator[int]] = {}

    def next(self, sweep_id: str) -> int:
        return next(self._counters.setdefault(sweep_id, itertools.count(1)))

    def forget(self, sweep_id: str) -> None:
        self._counters.pop(sweep_id, None)


def _transition_event(t: TransitionRow, batch: TailBatch) -> Event | None:
    """The event of one transition (numbered later); None for one no event stands for (a
    sweep stopping)."""
    base: dict[str, Any] = {"sweep_id": t.sweep_id, "seq": 0, "ts": t.at}
    if t.run_id is None:
        sweep = batch.sweeps.get(t.sweep_id)
        if t.state == SweepState.RUNNING and sweep is not None:
            return SweepStarted(
                **base, name=sweep.name, total=sweep.total or 0, concurrency=sweep.concurrency or 1
            )
        if t.state in {s.value for s in SWEEP_TERMINAL}:
            counts = batch.counts.get(t.sweep_id, {})
            return SweepFinished(**base, state=SweepState(t.state), reason=t.reason, counts=counts)
        return None
    run = batch.runs.get(t.run_id)
    if run is None:
        return None
    base |= {"run_id": run.id, "index": run.idx}
    if t.previous is None:
        return RunCreated(**base, params=run.params, argv=run.argv)
    state = RunState(t.state)
    return RunStateChanged(
        **base,
        previous=RunState(t.previous),
        state=state,
        reason=t.reason,
        exit_code=run.exit_code if state in TERMINAL else None,
        outputs=batch.outputs.get(run.id) if state is RunState.SUCCEEDED else None,
    )


def _metric_events(rows: list[MetricRow]) -> Iterator[MetricReported]:
    """One event per report (numbered later): the rows one report wrote (same run, step and
    time) together."""
    for (run_id, sweep_id, index, step, at), group in itertools.groupby(
        rows, key=lambda r: (r.run_id, r.sweep_id, r.idx, r.step, r.at)
    ):
        yield MetricReported(
            sweep_id=sweep_id,
            seq=0,
            ts=at,
            run_id=run_id,
            index=index,
            step=step,
            values={row.name: row.value for row in group},
        )


def events_of(batch: TailBatch, numbers: _Numbers, skip: Callable[[str], bool]) -> list[Event]:
    """The events of a batch in the order they happened (transitions and reports merged by
    time; a transition first on a tie: a run's creation before its reports), leaving out the
    sweeps ``skip`` names."""
    changes = (_transition_event(t, batch) for t in batch.transitions if not skip(t.sweep_id))
    reports = _metric_events([m for m in batch.metrics if not skip(m.sweep_id)])
    out: list[Event] = []
    for event in heapq.merge(
        (e for e in changes if e is not None), reports, key=lambda event: event.ts
    ):
        out.append(msgspec.structs.replace(event, seq=numbers.next(event.sweep_id)))
        if isinstance(event, SweepFinished):
            numbers.forget(event.sweep_id)
    return out


class JournalWatch:
    """Publishes what other processes journal (see the module's docstring)."""

    def __init__(
        self,
        path: Path,
        publish: Callable[[Event], None],
        ours: Callable[[str], bool],
        *,
        report: Callable[[str], None] | None = None,
        poll_s: float = POLL_S,
        limit: int = LIMIT,
    ) -> None:
        self.path = path
        self.publish = publish
        #: The daemon runs this sweep itself (its events are published already).
        self.ours = ours
        self.report = report or (lambda message: None)
        self.poll_s = poll_s
        self.limit = limit
        self.marks: Marks | None = None
        self._numbers = _Numbers()
        self._pid = os.getpid()
        #: The last read stopped short of the journal's end: read again without waiting.
        self._behind = False

    def start(self, tail: JournalTail) -> None:
        """Set the marks at the journal's end (in a worker thread): nothing before is news."""
        tail.changed()
        self.marks = tail.marks()

    def read(self, tail: JournalTail) -> TailBatch | None:
        """One look (in a worker thread): the new rows, or None when nothing was committed
        since the last look and nothing waits."""
        assert self.marks is not None
        if not tail.changed() and not self._behind:
            return None
        batch = tail.read(self.marks, skip_pid=self._pid, limit=self.limit)
        self.marks, self._behind = batch.marks, batch.behind
        return batch

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Watch until cancelled; started once the marks are at the journal's end."""
        tail = await anyio.to_thread.run_sync(JournalTail, self.path)
        try:
            await anyio.to_thread.run_sync(self.start, tail)
            task_status.started()
            failing = False
            while True:
                if not self._behind:
                    await anyio.sleep(self.poll_s)
                try:
                    batch = await anyio.to_thread.run_sync(self.read, tail)
                except StoreError as exc:  # a locked or broken journal: try again later
                    if not failing:
                        self.report(f"cannot follow other processes' sweeps: {exc}")
                    failing, self._behind = True, False
                    continue
                failing = False
                if batch is not None:
                    await self._publish(events_of(batch, self._numbers, self.ours))
        finally:
            tail.close()

    async def _publish(self, events: list[Event]) -> None:
        for start in range(0, len(events), _BURST):
            if start:
                await anyio.lowlevel.checkpoint()  # let followers take what is queued
            for event in events[start : start + _BURST]:
                self.publish(event)
