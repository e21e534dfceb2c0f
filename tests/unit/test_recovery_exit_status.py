"""Recovery trusts the exit statuses the run supervisor recorded: 0 is succeeded, another code
failed with it, a run killed because its orchestrator was gone (or with no status) lost; each
through moves the table allows, from whatever state the journal last recorded."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from orchestrator.engine.events import RunStateChanged
from orchestrator.engine.recovery import LOST, RECOVERED, recover, recovery_moves
from orchestrator.engine.states import UNFINISHED, RunState, check_transition
from orchestrator.executors.exit_status import ExitStatus, read_exit_status
from orchestrator.executors.supervisor import STATUS_FILE, status_record
from orchestrator.store.journal import Journal

S = RunState
NEVER = 0.0  # a deadline already past: do not wait
LATER = 1e18  # a deadline never reached


def _status(run_dir: Path, code: int, orphaned: bool = False) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / STATUS_FILE).write_bytes(status_record(code, orphaned))


# --- the moves --------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [s for s in RunState if s in UNFINISHED])
@pytest.mark.parametrize(
    ("status", "signalled", "end"),
    [
        (ExitStatus(0, orphaned=False), False, (S.SUCCEEDED, RECOVERED, 0)),
        (ExitStatus(0, orphaned=True), True, (S.SUCCEEDED, RECOVERED, 0)),
        (ExitStatus(3, orphaned=False), False, (S.FAILED, "exit code 3", 3)),
        (ExitStatus(-11, orphaned=False), False, (S.FAILED, "killed by SIGSEGV", -11)),
        (ExitStatus(-15, orphaned=True), False, (S.FAILED, LOST, -15)),
        (ExitStatus(-15, orphaned=False), True, (S.FAILED, LOST, -15)),
        (None, False, (S.FAILED, LOST, None)),
    ],
)
def test_every_unfinished_state_ends_through_allowed_moves(
    state: RunState,
    status: ExitStatus | None,
    signalled: bool,
    end: tuple[RunState, str, int | None],
) -> None:
    moves = recovery_moves(state, status, signalled=signalled)
    current = state
    for move in moves:
        check_transition(current, move.to)  # raises on a move the table forbids
        current = move.to
    last = moves[-1]
    assert (last.to, last.reason, last.exit_code) == end
    assert all(m.exit_code is None for m in moves[:-1]), "only the last move carries the code"


def test_the_journal_lagging_behind_takes_the_shortest_allowed_path() -> None:
    zero = ExitStatus(0, orphaned=False)
    assert [m.to for m in recovery_moves(S.CREATED, zero, signalled=False)] == [
        S.QUEUED,
        S.SUCCEEDED,
    ]
    assert [m.to for m in recovery_moves(S.STARTING, zero, signalled=False)] == [
        S.RUNNING,
        S.SUCCEEDED,
    ]
    assert [m.to for m in recovery_moves(S.RUNNING, zero, signalled=False)] == [S.SUCCEEDED]


# --- reading a status -------------------------------------------------------------------------


def test_no_file_an_empty_one_or_garbage_is_no_status(tmp_path: Path) -> None:
    assert read_exit_status(tmp_path / "missing", LATER) is None
    (tmp_path / STATUS_FILE).write_bytes(b"")
    assert read_exit_status(tmp_path, LATER) is None, "created at start, never filled"
    (tmp_path / STATUS_FILE).write_bytes(b'{"exit_code": "x"')
    assert read_exit_status(tmp_path, LATER) is None
    (tmp_path / STATUS_FILE).write_bytes(status_record(-9, True))
    assert read_exit_status(tmp_path, LATER) == ExitStatus(-9, orphaned=True)


def test_a_status_a_supervisor_still_holds_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / STATUS_FILE
    holder = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as the supervisor does while the run lives
    try:
        assert read_exit_status(tmp_path, NEVER) is None, "locked, and no time to wait"
        result: list[ExitStatus | None] = []
        reader = threading.Thread(target=lambda: result.append(read_exit_status(tmp_path, LATER)))
        reader.start()
        os.write(holder, status_record(0, False))
    finally:
        os.close(holder)  # the run was reaped: the lock goes
    reader.join(10)
    assert result == [ExitStatus(0, orphaned=False)]


# --- recovering a journal ---------------------------------------------------------------------


def _lost_sweep(journal: Journal, runs: dict[str, tuple[str, Path]]) -> None:
    """A sweep whose orchestrator is gone, with runs in the given journaled states."""
    journal.add_sweep(
        "s1",
        name=None,
        description=None,
        tags=[],
        spec_path="x",
        kind="mapping",
        total=len(runs),
        concurrency=len(runs),
        pid=os.getpid(),
        seed=None,
    )
    journal.set_sweep_state("s1", "running", None, finished=False)
    for index, (run_id, (state, run_dir)) in enumerate(runs.items()):
        journal.add_run(run_id, "s1", index, f"c{index}", "{}", "[]", str(run_dir), f"p{index}")
        if state != "created":
            journal.record_transition("s1", run_id, "created", state, None, None, 1)
    journal.flush_sync()
    with sqlite3.connect(journal.path) as conn:
        conn.execute("UPDATE sweeps SET pid = 999999999, pid_start = 1")


def test_recovery_ends_each_run_as_its_exit_status_says(tmp_path: Path) -> None:
    names = ("running0", "starting0", "created0", "exit3", "orphan", "nostatus")
    dirs = {name: tmp_path / "runs" / name for name in names}
    _status(dirs["running0"], 0)
    _status(dirs["starting0"], 0)
    _status(dirs["created0"], 0)
    _status(dirs["exit3"], 3)
    _status(dirs["orphan"], -15, orphaned=True)
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        _lost_sweep(
            journal,
            {
                "running0": ("running", dirs["running0"]),
                "starting0": ("starting", dirs["starting0"]),  # RUNNING was never journaled
                "created0": ("created", dirs["created0"]),
                "exit3": ("running", dirs["exit3"]),
                "orphan": ("running", dirs["orphan"]),
                "nostatus": ("running", dirs["nostatus"]),
            },
        )
        (recovered,) = recover(journal)
        ended = {
            run_id: (row.state, row.reason, row.exit_code)
            for run_id in dirs
            for row in [journal.find_run(run_id)]
        }
        assert ended == {
            "running0": ("succeeded", RECOVERED, 0),
            "starting0": ("succeeded", RECOVERED, 0),
            "created0": ("succeeded", RECOVERED, 0),
            "exit3": ("failed", "exit code 3", 3),
            "orphan": ("failed", LOST, -15),
            "nostatus": ("failed", LOST, None),
        }
        assert recovered.lost_runs == 2
        assert recovered.message.endswith(
            "2 unfinished run(s) marked failed (orchestrator_lost); "
            "4 had ended, as their exit status says (1 failed, 3 succeeded)"
        )
        moves = [
            (e.run_id, e.previous.value, e.state.value)
            for e in recovered.events
            if isinstance(e, RunStateChanged) and e.run_id in ("starting0", "created0")
        ]
        assert moves == [
            ("starting0", "starting", "running"),
            ("starting0", "running", "succeeded"),
            ("created0", "created", "queued"),
            ("created0", "queued", "succeeded"),
        ]
        assert recover(journal) == [], "recovery happens once"
    finally:
        journal.close()


def test_recovery_waits_for_a_supervisor_still_finishing_a_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    holder = os.open(run_dir / STATUS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fcntl.flock(holder, fcntl.LOCK_EX)
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        _lost_sweep(journal, {"r1": ("running", run_dir)})
        worker = threading.Thread(target=recover, args=(journal,))
        begun = time.monotonic()
        worker.start()
        os.write(holder, status_record(0, True))  # it exited 0 while being orphaned
        os.close(holder)
        worker.join(30)
        assert not worker.is_alive()
        assert time.monotonic() - begun < 10
        row = journal.find_run("r1")
        assert (row.state, row.exit_code) == ("succeeded", 0)
    finally:
        journal.close()
