"""Recovery trusts the exit statuses the run supervisor recorded: 0 is succeeded, another code
failed with it, a run killed because its orchestrator was gone (or with no status) lost; each
through moves the table allows, from whatever state the journal last recorded."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engine import recovery as recovery_module
from orchestrator.engine.events import RunStateChanged
from orchestrator.engine.recovery import LOST, RECOVERED, recover, recovery_moves
from orchestrator.engine.states import UNFINISHED, RunState, check_transition
from orchestrator.executors.base import Job
from orchestrator.executors.exit_status import (
    ExitStatus,
    read_exit_status,
    read_exit_statuses,
    remove_finished_files,
    start_record,
    statuses_in,
)
from orchestrator.executors.supervisor import STATUS_FILE, status_record
from orchestrator.procinfo import start_time
from orchestrator.store.journal import Journal
from orchestrator.store.layout import exit_status_path
from orchestrator.testing import FakeRun, run_fake_sweep

S = RunState
NEVER = 0.0  # a deadline already past: do not wait
LATER = 1e18  # a deadline never reached


#: The pid and start time the lost sweep of ``_lost_sweep`` records for its orchestrator.
GONE = (999999999, 1)


def _legacy(code: int, orphaned: bool) -> bytes:
    """A run folder's own ``exit_status.json``, as homes made before the shared files have."""
    return json.dumps({"exit_code": code, "orphaned": orphaned}).encode()


def _status(run_dir: Path, code: int, orphaned: bool = False) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / STATUS_FILE).write_bytes(_legacy(code, orphaned))


def _shared(home: Path, *lines: bytes, process: tuple[int, int] = GONE) -> Path:
    path = exit_status_path(home, *process)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(b"".join(lines))
    return path


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
    (tmp_path / STATUS_FILE).write_bytes(_legacy(-9, True))
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
        os.write(holder, _legacy(0, False))
    finally:
        os.close(holder)  # the run was reaped: the lock goes
    reader.join(10)
    assert result == [ExitStatus(0, orphaned=False)]


def test_the_shared_file_says_of_each_run_what_its_last_line_says() -> None:
    data = b"".join(
        [
            start_record("r1"),
            start_record("r10"),
            status_record("r1", 3, False),  # attempt 1 of r1 failed...
            start_record("r1"),  # ...attempt 2 never ended where anyone saw
            status_record("r10", 0, False),
            start_record("r2"),
            status_record("r2", -15, True),
            start_record("r3"),
            b'{"run": "r4", "exit_code": "x"}\n',
        ]
    )
    assert statuses_in(data, ["r1", "r10", "r2", "r3", "r4", "r5"]) == {
        "r1": None,
        "r10": ExitStatus(0, orphaned=False),
        "r2": ExitStatus(-15, orphaned=True),
        "r3": None,
        "r4": None,
    }, "r5 is not mentioned: nothing is said of it"


def test_a_shared_file_a_supervisor_still_holds_is_waited_for(tmp_path: Path) -> None:
    path = _shared(tmp_path, start_record("r1"))
    holder = os.open(path, os.O_WRONLY | os.O_APPEND)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as the supervisor's copy is, while the run lives
    try:
        assert read_exit_statuses(path, ["r1"], NEVER) == {}, "locked, and no time to wait"
        result: list[dict[str, ExitStatus | None]] = []
        reader = threading.Thread(
            target=lambda: result.append(read_exit_statuses(path, ["r1"], LATER))
        )
        reader.start()
        os.write(holder, status_record("r1", 0, False))
    finally:
        os.close(holder)  # the run was reaped: the lock goes
    reader.join(10)
    assert result == [{"r1": ExitStatus(0, orphaned=False)}]
    assert read_exit_statuses(tmp_path / "missing.jsonl", ["r1"], LATER) == {}


# --- recovering a journal ---------------------------------------------------------------------


def _lost_sweep(journal: Journal, runs: dict[str, tuple[str, Path]], sweep_id: str = "s1") -> None:
    """A sweep whose orchestrator is gone, with runs in the given journaled states."""
    journal.add_sweep(
        sweep_id,
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
    journal.set_sweep_state(sweep_id, "running", None, finished=False)
    for index, (run_id, (state, run_dir)) in enumerate(runs.items()):
        run_dir_text = str(run_dir)
        journal.add_run(run_id, sweep_id, index, f"c{index}", "{}", "[]", run_dir_text, f"p{index}")
        if state != "created":
            journal.record_transition(sweep_id, run_id, "created", state, None, None, 1)
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
        os.write(holder, _legacy(0, True))  # it exited 0 while being orphaned
        os.close(holder)
        worker.join(30)
        assert not worker.is_alive()
        assert time.monotonic() - begun < 10
        row = journal.find_run("r1")
        assert (row.state, row.exit_code) == ("succeeded", 0)
    finally:
        journal.close()


def test_recovery_reads_the_status_file_of_the_orchestrator_that_is_gone(tmp_path: Path) -> None:
    names = ("ok", "exit3", "retried", "orphan", "legacy", "nostatus")
    dirs = {name: tmp_path / "runs" / name for name in names}
    _shared(
        tmp_path,
        *(start_record(name) for name in names if name != "legacy"),
        status_record("ok", 0, False),
        status_record("exit3", 3, False),
        status_record("retried", 0, False),
        start_record("retried"),  # its second attempt was lost with the orchestrator
        status_record("orphan", -9, True),
    )
    _shared(tmp_path, status_record("ok", 5, False), process=(GONE[0], 2))  # another process
    _status(dirs["legacy"], 0)
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        _lost_sweep(journal, {name: ("running", run_dir) for name, run_dir in dirs.items()})
        (recovered,) = recover(journal)
        ended = {
            name: (journal.find_run(name).state, journal.find_run(name).exit_code) for name in names
        }
        assert ended == {
            "ok": ("succeeded", 0),
            "exit3": ("failed", 3),
            "retried": ("failed", None),
            "orphan": ("failed", -9),
            "legacy": ("succeeded", 0),
            "nostatus": ("failed", None),
        }
        assert recovered.lost_runs == 3
        assert not exit_status_path(tmp_path, *GONE).exists(), "its runs are ended: it goes"
    finally:
        journal.close()


def test_status_files_stay_while_someone_may_still_need_them(tmp_path: Path) -> None:
    me = (os.getpid(), start_time(os.getpid()) or 0)
    mine = _shared(tmp_path, start_record("a"), process=me)
    held = _shared(tmp_path, start_record("b"), process=(GONE[0], 7))
    driving = _shared(tmp_path, start_record("c"), process=(GONE[0], 8))
    done = _shared(tmp_path, status_record("d", 0, False), process=(GONE[0], 9))
    (tmp_path / "exit_status" / "notes.txt").write_text("not ours")
    holder = os.open(held, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # its supervisor is still killing a run
    try:
        remove_finished_files(tmp_path, keep={(GONE[0], 8)})  # it drives an unfinished sweep
    finally:
        os.close(holder)
    assert mine.exists(), "a live process's"
    assert held.exists(), "a supervisor's still at work"
    assert driving.exists(), "a sweep not recovered yet needs it"
    assert not done.exists()
    assert (tmp_path / "exit_status" / "notes.txt").exists()


def test_a_run_that_started_before_its_creation_was_journaled_is_ended_as_its_status_says(
    tmp_path: Path,
) -> None:
    # The journal's writes are batched: an orchestrator killed in the moment after it started
    # a run may leave no row for it. Its status file knows the run (its start line carries
    # the sweep, index and params hash): the run is journaled and ended, so that ``resume``
    # does not run that configuration a second time.
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        _lost_sweep(journal, {"known": ("running", tmp_path / "runs" / "known")})
        _shared(
            tmp_path,
            start_record("known", {"sweep": "s1", "index": 0, "params_hash": "p0"}),
            start_record("ran", {"sweep": "s1", "index": 1, "params_hash": "p1"}),
            start_record("other", {"sweep": "s2", "index": 1, "params_hash": "p1"}),
            start_record("failed", {"sweep": "s1", "index": 2, "params_hash": "p2"}),
            status_record("ran", 0, False),
            status_record("known", 0, False),
            status_record("failed", 4, False),
        )
        (recovered,) = recover(journal)
        rows = {row.id: row for row in journal.runs_of("s1")}
        ended = {i: (r.idx, r.params_hash, r.state, r.reason) for i, r in rows.items()}
        assert ended == {
            "known": (0, "p0", "succeeded", RECOVERED),
            "ran": (1, "p1", "succeeded", RECOVERED),
            "failed": (2, "p2", "failed", "exit code 4"),
        }
        assert journal.find_run("ran").run_dir == str(tmp_path / "runs" / "ran")
        assert recovered.ended == {"succeeded": 2, "failed": 1}
    finally:
        journal.close()


def test_runs_only_the_status_file_knows_go_to_their_own_sweeps(tmp_path: Path) -> None:
    # A daemon's sweeps share its status file: each sweep gets the runs its lines name.
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        _lost_sweep(journal, {})
        _lost_sweep(journal, {}, "s2")
        _shared(
            tmp_path,
            start_record("a", {"sweep": "s1", "index": 0, "params_hash": "p0"}),
            start_record("b", {"sweep": "s2", "index": 0, "params_hash": "q0"}),
            status_record("a", 0, False),
            status_record("b", 2, False),
        )
        assert len(recover(journal)) == 2
        assert [(r.id, r.state, r.params_hash) for r in journal.runs_of("s1")] == [
            ("a", "succeeded", "p0")
        ]
        assert [(r.id, r.state, r.params_hash) for r in journal.runs_of("s2")] == [
            ("b", "failed", "q0")
        ]
    finally:
        journal.close()


def test_a_lost_runs_params_and_its_searchs_suggestion_are_journaled_from_its_start_line(
    tmp_path: Path,
) -> None:
    # An adaptive search journals each suggestion with its run's creation: both may be lost
    # with an orchestrator killed just after the run started. The start line carries them,
    # so the run is journaled with its params and ``resume`` finds the search's record of
    # that index (it would otherwise ask the search for that index again: a second run
    # with the same index). A suggestion the journal has is kept as it is.
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        _lost_sweep(journal, {})
        journal.add_suggestion("s1", 2, {"lr": 0.5}, {"bracket": 0}, None)
        journal.flush_sync()
        suggestion = {"params": {"lr": 0.1}, "place": {"bracket": 1, "rung": 0}, "resumes": 0}
        _shared(
            tmp_path,
            start_record(
                "lost",
                {
                    "sweep": "s1",
                    "index": 1,
                    "params_hash": "p1",
                    "params": '{"lr":0.1}',
                    "suggestion": suggestion,
                },
            ),
            start_record(
                "kept",
                {
                    "sweep": "s1",
                    "index": 2,
                    "params_hash": "p2",
                    "params": '{"lr":0.5}',
                    "suggestion": {"params": {"lr": 9.9}, "place": {}, "resumes": None},
                },
            ),
            start_record("old", {"sweep": "s1", "index": 3, "params_hash": "p3"}),
            status_record("lost", 0, False),
            status_record("kept", 0, False),
            status_record("old", 0, False),
        )
        recover(journal)
        rows = {row.id: row.params for row in journal.runs_of("s1")}
        assert rows == {"lost": {"lr": 0.1}, "kept": {"lr": 0.5}, "old": {}}
        found = {
            row.index: (row.params, row.place, row.resumes, row.run_id)
            for row in journal.suggestions_of("s1")
        }
        assert found == {
            1: ({"lr": 0.1}, {"bracket": 1, "rung": 0}, 0, "lost"),
            2: ({"lr": 0.5}, {"bracket": 0}, None, "kept"),
        }
    finally:
        journal.close()


def test_an_adaptive_runs_start_line_carries_its_params_and_suggestion(tmp_path: Path) -> None:
    # What recovery reads above is what the engine writes: each job's identity (the start
    # line) has the run's params, and in an adaptive search the suggestion it was made from.
    spec = tmp_path / "hyperband.yaml"
    spec.write_text(
        "version: 1.1\nkind: operation\n"
        "matrix:\n  kind: hyperband\n  maxIterations: 3\n  eta: 3\n  seed: 1\n"
        "  resource: {name: epochs, type: int}\n"
        "  metric: {name: loss, optimization: minimize}\n"
        "  params: {lr: {kind: choice, value: [0.1, 0.2]}}\n"
        "component:\n  inputs: [{name: lr, type: float}, {name: epochs, type: int}]\n"
        "  run: {kind: job, container: {command: [train]}}\n"
    )
    identities: list[dict[str, Any]] = []

    def handler(job: Job) -> FakeRun:
        identities.append(dict(job.identity or {}))
        return FakeRun(lines=['{"metrics": {"loss": 1.0}}'])

    result, _ = run_fake_sweep(spec, handler, home=tmp_path / "home")
    assert result.state.value == "succeeded"
    assert identities
    with closing(Journal(tmp_path / "home" / "journal.sqlite")) as journal:
        journaled = {row.index: row for row in journal.suggestions_of(result.sweep_id)}
    for identity in identities:
        row = journaled[identity["index"]]
        assert json.loads(identity["params"]) == next(
            r.spec.params for r in result.runs if r.index == identity["index"]
        )
        assert identity["suggestion"] == {
            "params": row.params,
            "place": row.place,
            "resumes": row.resumes,
        }


def test_a_daemons_status_file_is_read_once_for_all_its_sweeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long-lived daemon's status file holds a line or two per run it ever ran; recovering
    # its unfinished sweeps reads it once, not once per sweep.
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        for sweep in ("s1", "s2", "s3"):
            _lost_sweep(journal, {f"{sweep}-run": ("running", tmp_path / "runs" / sweep)}, sweep)
        path = _shared(
            tmp_path,
            *(status_record(f"{sweep}-run", 0, False) for sweep in ("s1", "s2", "s3")),
        )
        opened: list[str] = []
        real_open = os.open

        def counting(name: Any, *args: Any, **kwargs: Any) -> int:
            if str(name) == str(path):
                opened.append(str(name))
            return real_open(name, *args, **kwargs)

        monkeypatch.setattr(os, "open", counting)
        assert len(recover(journal)) == 3
        monkeypatch.undo()
        states = {r.id: (r.state, r.reason) for s in ("s1", "s2", "s3") for r in journal.runs_of(s)}
        assert states == {f"{s}-run": ("succeeded", RECOVERED) for s in ("s1", "s2", "s3")}
        assert len(opened) == 2  # one read, and one look before the finished file is removed
    finally:
        journal.close()


def test_runs_a_status_file_knows_are_looked_up_a_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 10^6-run sweep's status file names every run it started: recovery keeps in memory the
    # runs the journal lacks (a crash leaves a few), looked up a chunk of lines at a time,
    # not a map of every run the file names.
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        known = {f"k{i}": ("succeeded", tmp_path / "runs" / f"k{i}") for i in range(7)}
        _lost_sweep(journal, known)
        lines = [
            start_record(f"k{i}", {"sweep": "s1", "index": i, "params_hash": f"p{i}"})
            for i in range(7)
        ]
        lines.insert(3, start_record("lost1", {"sweep": "s1", "index": 7, "params_hash": "p7"}))
        lines.append(start_record("lost2", {"sweep": "s1", "index": 8, "params_hash": "p8"}))
        _shared(
            tmp_path, *lines, status_record("lost1", 0, False), status_record("lost2", 3, False)
        )
        asked: list[int] = []
        real = Journal.known_runs

        def counted(self: Journal, run_ids: list[str]) -> set[str]:
            asked.append(len(run_ids))
            return real(self, run_ids)

        monkeypatch.setattr(Journal, "known_runs", counted)
        monkeypatch.setattr(recovery_module._StatusFiles, "CHUNK", 3)
        recover(journal)
        ended = {r.id: (r.state, r.idx) for r in journal.runs_of("s1") if r.id.startswith("lost")}
        assert ended == {"lost1": ("succeeded", 7), "lost2": ("failed", 8)}
        assert asked and max(asked) <= 3
    finally:
        journal.close()
