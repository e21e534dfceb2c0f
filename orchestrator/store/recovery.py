"""After a crash: find runs whose orchestrator is gone, stop their survivors, mark them lost.

A sweep records the pid and start time of the orchestrator that drives it, and each run the
pid and start time of its process-group leader. When that orchestrator no longer exists, its
unfinished runs become ``failed`` with reason ``orchestrator_lost``, and what is left of their
process groups gets SIGTERM, then SIGKILL; a recycled pid is never signalled.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import IO

from orchestrator.procinfo import is_same_process, signal_group, start_time
from orchestrator.store.journal import Journal

__all__ = ["LOST", "open_journal", "recover"]

LOST = "orchestrator_lost"
_UNFINISHED_RUNS = ("created", "queued", "starting", "running", "stopping", "retrying")
_UNFINISHED_SWEEPS = ("created", "running", "stopping")
#: Seconds survivors get between SIGTERM and SIGKILL.
SURVIVOR_GRACE_S = 2.0


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


def recover(journal: Journal) -> list[str]:
    """Mark the runs of dead orchestrators lost; return one message per recovered sweep."""
    messages: list[str] = []
    me = os.getpid()
    marks = ",".join("?" * len(_UNFINISHED_SWEEPS))
    sweeps = journal.query(f"SELECT * FROM sweeps WHERE state IN ({marks})", _UNFINISHED_SWEEPS)
    for sweep in sweeps:
        if sweep["pid"] == me or is_same_process(sweep["pid"], sweep["pid_start"]):
            continue
        run_marks = ",".join("?" * len(_UNFINISHED_RUNS))
        runs = journal.query(
            f"SELECT * FROM runs WHERE sweep_id = ? AND state IN ({run_marks})",
            (sweep["id"], *_UNFINISHED_RUNS),
        )
        groups = []
        for run in runs:
            pid = run["pid"]
            # Signal the group only if its leader is ours, or gone (its group can only hold
            # our processes then: a new leader would need the same pid).
            if pid and (is_same_process(pid, run["pid_start"]) or start_time(pid) is None):
                groups.append(pid)
        _stop_survivors(groups)
        for run in runs:
            journal.record_transition(
                sweep["id"], run["id"], run["state"], "failed", LOST, None, run["attempt"], finished=True
            )
        journal.set_sweep_state(sweep["id"], "failed", LOST, finished=True)
        messages.append(
            f"sweep {sweep['id'][:12]}: its orchestrator (pid {sweep['pid']}) is gone; "
            f"{len(runs)} unfinished run(s) marked failed ({LOST})"
        )
    journal.flush_sync()
    return messages


def open_journal(journal_file: Path, err: IO[str] | None = None) -> Journal:
    """Open a journal the way every command does: recover the runs of dead orchestrators
    (reported on ``err``), then carry out ``termination.ttl`` removals that came due."""
    journal = Journal(journal_file)
    for message in recover(journal):
        if err is not None:
            err.write(f"recovered: {message}\n")
    journal.run_due_cleanups()
    return journal
