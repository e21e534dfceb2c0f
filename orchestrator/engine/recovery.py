"""After a crash: find runs whose orchestrator is gone, stop their survivors, end them as their
durable exit statuses say.

A sweep records the pid and start time of the orchestrator that drives it, and each run the
pid and start time of its process-group leader. When that orchestrator no longer exists, what
is left of its unfinished runs' process groups gets SIGTERM, then SIGKILL (a recycled pid is
never signalled), and each run ends as its exit status, recorded by the run supervisor that
outlives the orchestrator (:mod:`orchestrator.executors.exit_status`), says: 0 is
``succeeded`` (reason ``recovered_exit_status``), so ``resume`` never runs it again; another
code is ``failed`` with it; a run killed because its orchestrator was gone, or with no status
(it never ended where anyone saw), is ``failed`` with reason ``orchestrator_lost``. The journal
may lag behind (its writes are batched), so a run may be found ``created`` or ``starting``
with a status: it takes the shortest path the table allows. Each move goes through
:mod:`orchestrator.engine.transitions` like a live one (checked against the table, journaled)
and is announced as the events a live sweep publishes (the daemon forwards them to its
followers). Then the exit-status files of processes that are gone, and that drive no
unfinished sweep, are removed: what they said is in the journal now.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from orchestrator.engine.bus import EventBus
from orchestrator.engine.events import Event, SweepFinished
from orchestrator.engine.outcome import Move, exit_reason
from orchestrator.engine.records import record_from_row
from orchestrator.engine.states import (
    ALLOWED,
    SWEEP_UNFINISHED,
    UNFINISHED,
    RunState,
    SweepState,
)
from orchestrator.engine.transitions import move_run, move_sweep
from orchestrator.executors.exit_status import (
    ExitStatus,
    StartedRun,
    read_exit_status,
    read_status_file,
    remove_finished_files,
    started_runs,
    statuses_in,
)
from orchestrator.procinfo import is_same_process, signal_group, start_time
from orchestrator.store.journal import Journal
from orchestrator.store.layout import RunLayout, exit_status_path
from orchestrator.store.rows import RunRow, SweepRow

__all__ = ["LOST", "RECOVERED", "Recovered", "open_journal", "recover", "recovery_moves"]

LOST = "orchestrator_lost"
#: The reason of a run that exited 0 while its orchestrator was gone.
RECOVERED = "recovered_exit_status"
#: Seconds survivors get between SIGTERM and SIGKILL.
SURVIVOR_GRACE_S = 2.0
#: Seconds to wait, per sweep, for a dead orchestrator's supervisor to finish with its runs
#: (it gives them 0.5 s between SIGTERM and SIGKILL, then records how they ended).
SUPERVISOR_WAIT_S = 5.0


@dataclass(frozen=True)
class Recovered:
    """One sweep whose orchestrator was gone, and what recovery did about it."""

    sweep_id: str
    pid: int | None
    lost_runs: int
    #: The transitions, as events: each run's ``RunStateChanged``, then ``SweepFinished``.
    events: list[Event] = field(default_factory=list)
    #: Runs that ended on their own, by the state their exit status gave them.
    ended: dict[str, int] = field(default_factory=dict)

    @property
    def message(self) -> str:
        kept = ""
        if self.ended:
            counts = ", ".join(f"{n} {state}" for state, n in sorted(self.ended.items()))
            kept = f"; {sum(self.ended.values())} had ended, as their exit status says ({counts})"
        return (
            f"sweep {self.sweep_id[:12]}: its orchestrator (pid {self.pid}) is gone; "
            f"{self.lost_runs} unfinished run(s) marked failed ({LOST}){kept}"
        )


def _path(start: RunState, goal: RunState) -> list[RunState]:
    """The states of the shortest sequence of allowed moves from ``start`` to ``goal``
    (``start`` excluded; breadth first, in the table's order, so always the same one)."""
    order = list(RunState)
    came_from = {start: start}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if state is goal:
            path = []
            while state is not start:
                path.append(state)
                state = came_from[state]
            return path[::-1]
        for nxt in sorted(ALLOWED[state], key=order.index):
            if nxt not in came_from:
                came_from[nxt] = state
                queue.append(nxt)
    return []


def recovery_moves(state: RunState, status: ExitStatus | None, *, signalled: bool) -> list[Move]:
    """The moves that end a run found in ``state`` after its orchestrator died, given its
    recorded exit status (None: none) and whether recovery itself signalled its group."""
    code: int | None
    if status is not None and status.exit_code == 0:
        goal, reason, code = RunState.SUCCEEDED, RECOVERED, 0
    elif status is not None and not (status.orphaned or signalled):
        goal, reason, code = RunState.FAILED, exit_reason(status.exit_code), status.exit_code
    else:
        goal, reason = RunState.FAILED, LOST
        code = status.exit_code if status is not None else None
    path = _path(state, goal) or [RunState.FAILED]
    return [Move(to, reason, code if to is path[-1] else None) for to in path]


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


def _recover_sweep(journal: Journal, sweep: SweepRow, files: _StatusFiles) -> Recovered:
    _add_started_runs(journal, sweep, files)
    runs = journal.unfinished_runs(sweep.id, [s.value for s in UNFINISHED])
    groups, alive = [], set()
    for run in runs:
        pid = run.pid
        # Signal the group only if its leader is ours, or gone (its group can only hold
        # our processes then: a new leader would need the same pid).
        if pid and is_same_process(pid, run.pid_start):
            groups.append(pid)
            alive.add(run.id)
        elif pid and start_time(pid) is None:
            groups.append(pid)
    _stop_survivors(groups)
    bus = EventBus(sweep.id)  # numbers the events; nobody subscribes
    events: list[Event] = []
    lost, ended = 0, Counter[str]()
    statuses = _exit_statuses(sweep, runs, time.monotonic() + SUPERVISOR_WAIT_S, files)
    for run in runs:
        status = statuses.get(run.id)
        record = record_from_row(run)
        moves = recovery_moves(record.state, status, signalled=run.id in alive)
        for move in moves:
            events.append(move_run(journal, bus, record, move.to, move.reason, move.exit_code))
        if moves[-1].reason == LOST:
            lost += 1
        else:
            ended[moves[-1].to.value] += 1
    move_sweep(journal, sweep.id, SweepState(sweep.state), SweepState.FAILED, LOST)
    journal.flush_sync()
    counts = journal.latest_state_counts(sweep.id)  # counted by SQLite, no rows read
    events.append(bus.stamp(SweepFinished, state=SweepState.FAILED, reason=LOST, counts=counts))
    return Recovered(sweep.id, sweep.pid, lost, events, dict(ended))


class _StatusFiles:
    """The status files one recovery reads, each read once however many of its sweeps are
    recovered (a daemon's file serves them all, and holds a line or two per run it ever
    ran): the runs it records the start of, and its content once no supervisor holds it."""

    #: Start lines looked up in the journal at once.
    CHUNK = 500

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._unknown: dict[Path, dict[str, dict[str, StartedRun]]] = {}
        self._content: dict[Path, bytes] = {}

    def unknown(self, path: Path) -> dict[str, dict[str, StartedRun]]:
        """The runs the status file at ``path`` records the start of and the journal does
        not hold, by sweep, then by run id. The file is read line by line and looked up a
        chunk at a time: memory holds those runs (a crash leaves a few), not every run the
        file names."""
        if path not in self._unknown:
            unknown: dict[str, dict[str, StartedRun]] = {}
            chunk: dict[str, tuple[str, StartedRun]] = {}
            for sweep_id, run_id, found in started_runs(path):
                chunk.setdefault(run_id, (sweep_id, found))  # an attempt's first line
                if len(chunk) >= self.CHUNK:
                    self._keep_unknown(chunk, unknown)
            self._keep_unknown(chunk, unknown)
            self._unknown[path] = unknown
        return self._unknown[path]

    def _keep_unknown(
        self,
        chunk: dict[str, tuple[str, StartedRun]],
        unknown: dict[str, dict[str, StartedRun]],
    ) -> None:
        known = self._journal.known_runs(list(chunk))
        for run_id, (sweep_id, found) in chunk.items():
            if run_id not in known:
                unknown.setdefault(sweep_id, {}).setdefault(run_id, found)
        chunk.clear()

    def statuses(
        self, path: Path, run_ids: list[str], deadline: float
    ) -> dict[str, ExitStatus | None]:
        """:func:`read_exit_statuses` of ``path``; a file still held at ``deadline`` is not
        remembered (the next sweep waits for it again, as it would alone)."""
        data = self._content.get(path)
        if data is None:
            data = read_status_file(path, deadline)
            if data is None:
                return {}
            self._content[path] = data
        return statuses_in(data, run_ids)


def _add_started_runs(journal: Journal, sweep: SweepRow, files: _StatusFiles) -> None:
    """Journal the runs that started while their creation was on its way to the journal
    (its writes are batched: a run starts at once, not a transaction later). The
    orchestrator wrote each run's start, with its index, params and an adaptive search's
    suggestion, to its status file first; such a run joins the journal as ``created``, to be
    ended as its status says, so ``resume`` does not run its configuration again (nor ask
    the search for that index anew)."""
    if not sweep.pid:
        return
    home = journal.path.parent
    path = exit_status_path(home, sweep.pid, sweep.pid_start)
    missing = files.unknown(path).pop(sweep.id, {})
    for run_id, found in missing.items():
        run_dir = str(RunLayout(home, run_id).run_dir)
        journal.add_started_run(
            run_id, sweep.id, found.run_index, found.params_hash, run_dir, found.params
        )
        if found.suggestion is not None:  # its adaptive search's record may be lost with it
            params, place, resumes = found.suggestion
            journal.add_suggestion(sweep.id, found.run_index, params, place, resumes, replace=False)
    if missing:
        journal.flush_sync()  # read back with the sweep's unfinished runs next


def _exit_statuses(
    sweep: SweepRow, runs: list[RunRow], deadline: float, files: _StatusFiles
) -> dict[str, ExitStatus | None]:
    """The recorded exit statuses of ``runs``: from the status file of the sweep's orchestrator
    process (in each run's home), else from a run folder's own ``exit_status.json`` (homes
    made before the shared files)."""
    statuses: dict[str, ExitStatus | None] = {}
    by_home: dict[Path, list[str]] = {}
    for run in runs:
        if run.run_dir:
            by_home.setdefault(Path(run.run_dir).parent.parent, []).append(run.id)
    for home, run_ids in by_home.items():
        if sweep.pid:
            path = exit_status_path(home, sweep.pid, sweep.pid_start)
            statuses.update(files.statuses(path, run_ids, deadline))
    for run in runs:
        if run.id not in statuses and run.run_dir:
            statuses[run.id] = read_exit_status(Path(run.run_dir), deadline)
    return statuses


def recover(journal: Journal) -> list[Recovered]:
    """End the unfinished runs of dead orchestrators (as their exit statuses say, else lost);
    one record per recovered sweep. Then the exit-status files of processes that drive no
    unfinished sweep go."""
    me = os.getpid()
    recovered = []
    files = _StatusFiles(journal)
    keep = set()  # the processes of the sweeps left running: their status files stay
    for sweep in journal.unfinished_sweeps([s.value for s in SWEEP_UNFINISHED]):
        if sweep.pid == me or is_same_process(sweep.pid, sweep.pid_start):
            if sweep.pid:
                keep.add((sweep.pid, sweep.pid_start or 0))
            continue
        recovered.append(_recover_sweep(journal, sweep, files))
    journal.flush_sync()
    remove_finished_files(journal.path.parent, keep)
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
