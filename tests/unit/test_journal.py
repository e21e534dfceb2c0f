"""The journal on a real SQLite file: batched writes, typed rows from its named reads, errors."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.exceptions import NotFoundError, StoreError
from orchestrator.store import journal as journal_module
from orchestrator.store.journal import Journal
from orchestrator.store.rows import CleanupRow, RunRow, SweepRow


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's ``time.time()``: 1000, 1001, ... (so every record is strictly newer)."""
    ticks = itertools.count(1000.0)
    fake = types.SimpleNamespace(
        time=lambda: next(ticks), monotonic=time.monotonic, sleep=time.sleep
    )
    monkeypatch.setattr(journal_module, "time", fake)


@pytest.fixture
def journal(tmp_path: Path, clock: None) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite")
    yield j
    j.close()


def _sweep(journal: Journal, sweep_id: str, **fields: Any) -> None:
    values: dict[str, Any] = {
        "name": None,
        "description": None,
        "tags": [],
        "spec_path": "spec.yaml",
        "kind": "grid",
        "total": 2,
        "concurrency": 1,
        "pid": 1,
        "seed": None,
    }
    journal.add_sweep(sweep_id, **(values | fields))


def _run(journal: Journal, run_id: str, sweep_id: str, index: int, params_hash: str = "") -> None:
    journal.add_run(
        run_id,
        sweep_id,
        index,
        f"config-{index}",
        f'{{"lr": {index}}}',
        f'["python", "train.py", "{index}"]',
        f"/runs/{run_id}",
        params_hash or f"p{index}",
    )


class _Recording:
    """The writer's connection, recording statements; its first ``BEGIN`` waits for ``gate``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.calls: list[tuple[str, int]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        if sql == "BEGIN" and not self.entered.is_set():
            self.entered.set()
            assert self.gate.wait(30)
        self.calls.append((sql, 1))
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, seq: list[tuple[Any, ...]]) -> sqlite3.Cursor:
        self.calls.append((sql, len(seq)))
        return self.conn.executemany(sql, seq)

    def close(self) -> None:
        self.conn.close()


def test_writes_queued_meanwhile_go_in_one_transaction(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording = _Recording(journal._write)
    monkeypatch.setattr(journal, "_write", recording)
    journal.add_metrics("r0", 0, {"loss": 1.0})
    assert recording.entered.wait(30), "the writer took the first write"
    for step in range(100):  # queued while the writer is busy with the first one
        journal.add_metrics("r0", step, {"loss": float(step)})
    recording.gate.set()
    journal.flush_sync()
    assert [sql for sql, _ in recording.calls].count("BEGIN") == 2
    inserts = [n for sql, n in recording.calls if sql.startswith("INSERT INTO metrics")]
    assert inserts == [1, 100], "consecutive identical statements share one executemany"
    assert journal.last_metrics(["r0"]) == {"r0": {"loss": 99.0}}


def test_flush_sync_makes_every_queued_write_readable(journal: Journal) -> None:
    _sweep(journal, "s1")
    for index in range(50):
        _run(journal, f"r{index}", "s1", index)
    journal.flush_sync()
    assert [r.idx for r in journal.runs_of("s1")] == list(range(50))


def test_find_sweep_by_id_prefix_and_last(journal: Journal) -> None:
    _sweep(
        journal,
        "abc111",
        name="first",
        tags=["a", "b"],
        overrides={"lr": "0.1"},
        seed=7,
        daemon_spec=("version: 1.1", "/base"),
    )
    _sweep(journal, "abc222", name="second")
    _sweep(journal, "xyz333", name="third")
    journal.flush_sync()

    first = journal.find_sweep("abc111")
    assert isinstance(first, SweepRow)
    assert (first.id, first.name, first.state, first.kind, first.total) == (
        "abc111",
        "first",
        "created",
        "grid",
        2,
    )
    assert first.tags == ["a", "b"] and first.overrides == {"lr": "0.1"}
    assert (first.spec_text, first.base_dir, first.via_daemon, first.seed) == (
        "version: 1.1",
        "/base",
        True,
        7,
    )
    assert isinstance(first.created_at, float) and first.finished_at is None
    second = journal.find_sweep("abc2")
    assert (second.id, second.tags, second.overrides, second.via_daemon) == (
        "abc222",
        [],
        {},
        False,
    )
    assert journal.find_sweep("last").id == "xyz333"
    with pytest.raises(NotFoundError, match="matches 2 sweeps"):
        journal.find_sweep("abc")
    with pytest.raises(NotFoundError, match="no sweep matches"):
        journal.find_sweep("nope")


def test_find_sweep_last_without_sweeps(journal: Journal) -> None:
    with pytest.raises(NotFoundError, match="no sweeps yet"):
        journal.find_sweep("last")


def test_sweep_lists(journal: Journal) -> None:
    for sweep_id, spec in [("s1", "a.yaml"), ("s2", "b.yaml"), ("s3", "a.yaml")]:
        _sweep(journal, sweep_id, spec_path=spec, daemon_spec=("text", "."))
    journal.set_sweep_state("s1", "failed", "orchestrator_lost", finished=True)
    journal.set_sweep_state("s2", "running", None, finished=False)
    journal.set_sweep_state("s3", "failed", "exit_code", finished=True)
    journal.flush_sync()

    assert [s.id for s in journal.latest_sweeps(2)] == ["s3", "s2"]
    assert journal.latest_sweep_of_spec("a.yaml") == "s3"
    assert journal.latest_sweep_of_spec("c.yaml") is None
    unfinished = journal.unfinished_sweeps(["created", "running"])
    assert [(s.id, s.state) for s in unfinished] == [("s2", "running")]
    lost = journal.lost_daemon_sweeps("orchestrator_lost")
    assert [(s.id, s.reason) for s in lost] == [("s1", "orchestrator_lost")]
    assert isinstance(lost[0].finished_at, float)


def test_run_reads_are_typed(journal: Journal) -> None:
    _sweep(journal, "s1")
    _run(journal, "run-a1", "s1", 0)
    _run(journal, "run-b2", "s1", 1)
    journal.record_transition(
        "s1", "run-a1", "created", "running", None, None, 1, 4242, started=True
    )
    journal.record_transition("s1", "run-b2", "created", "failed", "boom", 3, 2, finished=True)
    journal.flush_sync()

    run = journal.find_run("run-a")
    assert isinstance(run, RunRow)
    assert (run.id, run.sweep_id, run.idx, run.config_hash, run.params_hash) == (
        "run-a1",
        "s1",
        0,
        "config-0",
        "p0",
    )
    assert run.params == {"lr": 0} and run.argv == ["python", "train.py", "0"]
    assert (run.state, run.attempt, run.pid, run.run_dir) == ("running", 1, 4242, "/runs/run-a1")
    assert isinstance(run.started_at, float) and run.finished_at is None
    failed = journal.find_run("run-b2")
    assert (failed.state, failed.reason, failed.exit_code, failed.attempt) == (
        "failed",
        "boom",
        3,
        2,
    )
    with pytest.raises(NotFoundError, match="matches 2 runs"):
        journal.find_run("run-")
    with pytest.raises(NotFoundError, match="no run matches"):
        journal.find_run("nope")

    assert journal.run_state("run-a1") == "running"
    assert journal.run_state("nope") is None
    assert [r.id for r in journal.unfinished_runs("s1", ["created", "running"])] == ["run-a1"]
    at = journal.run_at("s1", 1)
    assert at is not None and at.id == "run-b2"
    assert journal.run_at("s1", 5) is None


def test_latest_runs_gives_the_newest_attempt_of_each_configuration(journal: Journal) -> None:
    _sweep(journal, "s1")
    _run(journal, "c2-first", "s1", 2)
    _run(journal, "c0-first", "s1", 0)
    _run(journal, "c1-only", "s1", 1)
    _run(journal, "c0-second", "s1", 0)
    _run(journal, "c2-second", "s1", 2)
    _run(journal, "c0-third", "s1", 0)
    _sweep(journal, "other")
    _run(journal, "elsewhere", "other", 0)
    journal.flush_sync()

    assert [r.id for r in journal.latest_runs("s1")] == ["c0-third", "c1-only", "c2-second"]
    assert [r.id for r in journal.runs_of("s1")] == [
        "c0-first",
        "c0-second",
        "c0-third",
        "c1-only",
        "c2-first",
        "c2-second",
    ]
    newest = journal.run_at("s1", 0)
    assert newest is not None and newest.id == "c0-third"


def test_metrics_and_outputs_of_many_runs(journal: Journal) -> None:
    ids = [f"r{i:04d}" for i in range(1201)]  # three chunks of at most 500 ids
    for i, run_id in enumerate(ids):
        journal.add_metrics(run_id, 1, {"loss": 1.0, "acc": 0.5})
        journal.add_metrics(run_id, 2, {"loss": float(i)})
        journal.set_output(run_id, "best", {"index": i})
    journal.flush_sync()

    metrics = journal.last_metrics(ids)
    assert len(metrics) == 1201
    assert all(metrics[run_id] == {"loss": float(i), "acc": 0.5} for i, run_id in enumerate(ids))
    outputs = journal.outputs_of(ids)
    assert len(outputs) == 1201
    assert all(outputs[run_id] == {"best": {"index": i}} for i, run_id in enumerate(ids))
    assert journal.last_metrics([]) == {} and journal.outputs_of(["unknown"]) == {}


def test_due_cleanups(journal: Journal, tmp_path: Path) -> None:
    due, later = tmp_path / "due", tmp_path / "later"
    due.mkdir()
    later.mkdir()
    journal.add_cleanup("r1", str(due), 0.0)
    journal.add_cleanup("r2", str(later), 1e12)
    journal.flush_sync()
    assert journal.due_cleanups() == [CleanupRow("r1", str(due))]
    assert journal.run_due_cleanups() == 1
    journal.flush_sync()
    assert not due.exists() and later.exists()
    assert journal.due_cleanups() == []


def test_a_failed_write_surfaces_on_the_next_flush_and_fails_only_its_sweep(
    journal: Journal,
) -> None:
    _sweep(journal, "s1")
    _sweep(journal, "s2")
    _run(journal, "r1", "s1", 0)
    journal.flush_sync()
    _run(journal, "r2", "s2", 0)
    _run(journal, "r1", "s1", 1)  # the same primary key again: this record alone fails
    _sweep(journal, "s2")  # so does accepting a sweep twice: refused to whoever awaits it
    with pytest.raises(StoreError, match="journal write failed: UNIQUE constraint"):
        journal.flush_sync()
    assert "UNIQUE constraint" in (journal.lost("s1") or "")
    assert journal.lost("s2") is None, "a refused acceptance does not fail the sweep"
    assert [r.id for r in journal.runs_of("s2")] == ["r2"], "the rest of the batch committed"
    with pytest.raises(StoreError, match="UNIQUE constraint"):
        journal.flush_sync(sweep_id="s1")
    with pytest.raises(StoreError, match="UNIQUE constraint"):
        journal.flush_sync(sweep_id="s2")
    journal.flush_sync(sweep_id="s2")  # the refusal was told once
    journal.add_metrics("r2", 1, {"loss": 1.0})  # later writes are not refused
    journal.flush_sync()
    assert journal.last_metrics(["r2"]) == {"r2": {"loss": 1.0}}
    assert journal.write_error is None, "the last write committed: the writer is healthy"


def test_a_failing_connection_surfaces_as_store_error(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken:
        def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
            if sql != "ROLLBACK":
                raise sqlite3.OperationalError("disk I/O error")

        def close(self) -> None:
            pass

    real = journal._write
    monkeypatch.setattr(journal, "_write", Broken())
    journal.add_metrics("r1", 1, {"loss": 1.0})
    with pytest.raises(StoreError, match="disk I/O error"):
        journal.flush_sync()
    real.close()
