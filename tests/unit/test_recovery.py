"""Recovery never signals a recycled pid, and marks lost runs failed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from orchestrator.engine.events import RunStateChanged, SweepFinished
from orchestrator.engine.recovery import LOST, recover
from orchestrator.engine.states import RunState, SweepState
from orchestrator.procinfo import is_same_process, start_time
from orchestrator.store.journal import Journal


def test_start_time_names_one_process() -> None:
    me = os.getpid()
    assert is_same_process(me, start_time(me))
    assert not is_same_process(me, (start_time(me) or 0) + 1), "a recycled pid is not ours"
    assert not is_same_process(None, None)


def _lost_sweep(journal: Journal, *, run_pid: int, run_start: int | None) -> None:
    journal.add_sweep(
        "s1",
        name=None,
        description=None,
        tags=[],
        spec_path="x",
        kind="mapping",
        total=1,
        concurrency=1,
        pid=os.getpid(),
        seed=None,
    )
    journal.set_sweep_state("s1", "running", None, finished=False)
    journal.add_run("r1", "s1", 0, "c", "{}", "[]", "/tmp/r1", "p")
    journal.record_transition(
        "s1", "r1", "created", "running", None, None, 1, pid=run_pid, started=True
    )
    journal.flush_sync()
    with sqlite3.connect(journal.path) as conn:
        # The orchestrator of this sweep "was" a process that no longer exists.
        conn.execute("UPDATE sweeps SET pid = 999999999, pid_start = 1")
        conn.execute("UPDATE runs SET pid_start = ?", (run_start,))


def test_recover_marks_runs_lost_and_spares_a_recycled_pid(tmp_path: Path) -> None:
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        journal = Journal(tmp_path / "journal.sqlite")
        # The run's pid is now used by an unrelated process (different start time).
        _lost_sweep(journal, run_pid=bystander.pid, run_start=(start_time(bystander.pid) or 0) - 5)
        (recovered,) = recover(journal)
        assert "1 unfinished run(s) marked failed (orchestrator_lost)" in recovered.message
        assert bystander.poll() is None, "a recycled pid must never be signalled"
        run, sweep = journal.find_run("r1"), journal.find_sweep("s1")
        assert (run.state, run.reason) == ("failed", LOST)
        assert (sweep.state, sweep.reason) == ("failed", LOST)
        assert recover(journal) == [], "recovery happens once"
        journal.close()
    finally:
        bystander.kill()
        bystander.wait()


def test_recover_stops_survivors_of_a_lost_run(tmp_path: Path) -> None:
    survivor = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        journal = Journal(tmp_path / "journal.sqlite")
        _lost_sweep(journal, run_pid=survivor.pid, run_start=start_time(survivor.pid))
        recover(journal)
        assert survivor.wait(10) == -15
        journal.close()
    finally:
        if survivor.poll() is None:
            survivor.kill()
            survivor.wait()


def test_recovery_moves_are_checked_and_announced(tmp_path: Path) -> None:
    """Recovery is no back door: each move is a table-checked transition, journaled with its
    previous state, and announced as the events a live sweep publishes."""
    journal = Journal(tmp_path / "journal.sqlite")
    _lost_sweep(journal, run_pid=0, run_start=None)
    (recovered,) = recover(journal)
    run_event, sweep_event = recovered.events
    assert isinstance(run_event, RunStateChanged)
    assert (run_event.run_id, run_event.previous, run_event.state, run_event.reason) == (
        "r1",
        RunState.RUNNING,
        RunState.FAILED,
        LOST,
    )
    assert isinstance(sweep_event, SweepFinished)
    assert (sweep_event.state, sweep_event.counts) == (SweepState.FAILED, {"failed": 1})
    assert sweep_event.seq > run_event.seq
    with sqlite3.connect(journal.path) as conn:
        moves = conn.execute(
            "SELECT from_state, to_state, reason FROM transitions WHERE run_id = 'r1' ORDER BY id"
        ).fetchall()
    assert moves[-1] == ("running", "failed", LOST)
    journal.close()
