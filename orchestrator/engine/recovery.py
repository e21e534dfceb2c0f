"""After a crash: find runs whose orchestrator is gone, stop their survivors, mark them lost.

A sweep records the pid and start time of the orchestrator that drives it, and each run the
pid and start time of its process-group leader. When that orchestrator no longer exists, its
unfinished runs become ``failed`` with reason ``orchestrator_lost``, and what is left of their
process groups gets SIGTERM, then SIGKILL; a recycled pid is never signalled. Each of these
moves goes through :mod:`orchestrator.engine.transitions` like a live one (checked against
the table, journaled) and is announced as the events a live sweep publishes (the daemon
forwards them to its followers).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from orchestrator.engine.bus import EventBus
from orchestrator.engine.events import Event, SweepFinished
from orchestrator.engine.outcome import count_states
from orchestrator.engine.records import record_from_row
from orchestrator.engine.states import SWEEP_UNFINISHED, UNFINISHED, RunState, SweepState
from orchestrator.engine.transitions import move_run, move_sweep
from orchestrator.procinfo import is_same_process, signal_group, start_time
from orchestrator.store.journal import Journal
from orchestrator.store.rows import SweepRow

__all__ = ["LOST", "Recovered", "open_journal", "recover"]

LOST = "orchestrator_lost"
#: Seconds survivors get between SIGTERM and SIGKILL.
SURVIVOR_GRACE_S = 2.0


@dataclass(frozen=True)
class Recovered:
    """One sweep whose orchestrator was gone, and what recovery did about it."""

    sweep_id: str
    pid: int | None
    lost_runs: int
    #: The transitions, as events: each lost run's ``RunStateChanged``, then ``SweepFinished``.
    events: list[Event] = field(default_factory=list)

    @property
    def message(self) -> str:
        return (
            f"sweep {self.sweep_id[:12]}: its orchestrator (pid {self.pid}) is gone; "
            f"{self.lost_runs} unfinished run(s) marked failed ({LOST})"
        )


def _stop_survivors(groups: list[int]) -> None:
    for pgid in groups:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + SURVIVOR_GRACE_S
    while groups and time.monotonic() < deadline:
        groups = [g for g in groups if start_time(g) is not None]
        if groups:
            time.sleep(0.05)
    for pgid in groups:
        signal_group(pgid, signal.SIGKILL)


def _recover_sweep(journal: Journal, sweep: SweepRow) -> Recovered:
    runs = journal.unfinished_runs(sweep.id, [s.value for s in UNFINISHED])
    groups = []
    for run in runs:
        pid = run.pid
        # Signal the group only if its leader is ours, or gone (its group can only hold
        # our processes then: a new leader would need the same pid).
        if pid and (is_same_process(pid, run.pid_start) or start_time(pid) is None):
            groups.append(pid)
    _stop_survivors(groups)
    bus = EventBus(sweep.id)  # numbers the events; nobody subscribes
    events: list[Event] = [
        move_run(journal, bus, record_from_row(run), RunState.FAILED, LOST) for run in runs
    ]
    move_sweep(journal, sweep.id, SweepState(sweep.state), SweepState.FAILED, LOST)
    journal.flush_sync()
    counts = count_states(RunState(r.state) for r in journal.latest_runs(sweep.id))
    events.append(bus.stamp(SweepFinished, state=SweepState.FAILED, reason=LOST, counts=counts))
    return Recovered(sweep.id, sweep.pid, len(runs), events)


def recover(journal: Journal) -> list[Recovered]:
    """Mark the runs of dead orchestrators lost; one record per recovered sweep."""
    me = os.getpid()
    recovered = []
    for sweep in journal.unfinished_sweeps([s.value for s in SWEEP_UNFINISHED]):
        if sweep.pid == me or is_same_process(sweep.pid, sweep.pid_start):
            continue
        recovered.append(_recover_sweep(journal, sweep))
    journal.flush_sync()
    return recovered


def open_journal(
    journal_file: Path,
    err: IO[str] | None = None,
    announce: Callable[[Event], None] | None = None,
) -> Journal:
    """Open a journal the way every command does: recover the runs of dead orchestrators
    (reported on ``err``, their events given to ``announce``), then carry out
    ``termination.ttl`` removals that came due."""
    journal = Journal(journal_file)
    for sweep in recover(journal):
        if err is not None:
            err.write(f"recovered: {sweep.message}\n")
        if announce is not None:
            for event in sweep.events:
                announce(event)
    journal.run_due_cleanups()
    return journal
