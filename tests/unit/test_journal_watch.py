"""Reading other processes' sweeps back from a real journal: marks start at its end (no
replay), move past every row read (the daemon's own skipped), a read covers a bounded window,
and the rows become the engine's events in order."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.daemon.journal_watch import JournalWatch, _Numbers, events_of
from orchestrator.engine.events import (
    MetricReported,
    RunCreated,
    RunStateChanged,
    SweepFinished,
    SweepStarted,
)
from orchestrator.store.journal import Journal
from orchestrator.store.tail import JournalTail, Marks

OTHER_PID = 1  # a sweep some other process runs


def add_sweep(journal: Journal, sweep_id: str, pid: int) -> None:
    journal.add_sweep(
        sweep_id,
        name=f"name-{sweep_id}",
        description=None,
        tags=[],
        spec_path="spec.yaml",
        kind="mapping",
        total=1,
        concurrency=2,
        pid=pid,
        seed=None,
    )


def one_run(journal: Journal, sweep_id: str, run_id: str, reports: int) -> None:
    """A sweep's whole life: started, one run created, running, reporting, succeeded, ended."""
    journal.set_sweep_state(sweep_id, "running", None, finished=False)
    journal.add_run(run_id, sweep_id, 0, "c", '{"n": 1}', '["x"]', "/x", "p")
    journal.record_transition(sweep_id, run_id, "created", "running", None, None, 1)
    for step in range(reports):
        journal.add_metrics(run_id, step, {"loss": 1.0 / (step + 1), "acc": step / 10})
    journal.set_output(run_id, "score", 3)
    journal.record_transition(sweep_id, run_id, "running", "succeeded", None, 0, 1, finished=True)
    journal.set_sweep_state(sweep_id, "succeeded", None, finished=True)
    journal.flush_sync()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite")
    add_sweep(j, "old", OTHER_PID)
    one_run(j, "old", "old-run", 3)  # history before the watch starts
    yield j
    j.close()


@pytest.fixture
def tail(journal: Journal) -> Iterator[JournalTail]:
    t = JournalTail(journal.path)
    yield t
    t.close()


def test_marks_start_at_the_end_and_follow_new_rows_only(
    journal: Journal, tail: JournalTail
) -> None:
    assert tail.changed(), "the first look counts as a change"
    start = tail.marks()
    assert not tail.changed(), "nothing committed since"
    empty = tail.read(start, skip_pid=os.getpid(), limit=1000)
    assert (empty.transitions, empty.metrics, empty.marks, empty.behind) == ([], [], start, False)

    add_sweep(journal, "ours", os.getpid())
    one_run(journal, "ours", "our-run", 2)
    add_sweep(journal, "cli", OTHER_PID)
    one_run(journal, "cli", "cli-run", 2)
    assert tail.changed()
    batch = tail.read(start, skip_pid=os.getpid(), limit=1000)
    assert batch.marks == tail.marks() and not batch.behind
    assert {t.sweep_id for t in batch.transitions} == {"cli"}, "no history, not the daemon's"
    assert [(m.run_id, m.name, m.step) for m in batch.metrics] == [
        ("cli-run", "loss", 0),
        ("cli-run", "acc", 0),
        ("cli-run", "loss", 1),
        ("cli-run", "acc", 1),
    ]
    assert batch.outputs == {"cli-run": {"score": 3}}
    assert batch.counts["cli"] == {"succeeded": 1}


def test_a_read_covers_a_bounded_window_and_the_next_continues(
    journal: Journal, tail: JournalTail
) -> None:
    since = tail.marks()
    add_sweep(journal, "big", OTHER_PID)
    one_run(journal, "big", "big-run", 12)  # 24 metric rows, 5 transitions
    seen: list[tuple[str, int | None]] = []
    transitions = 0
    reads = 0
    while True:
        batch = tail.read(since, skip_pid=os.getpid(), limit=5)
        reads += 1
        assert batch.marks.metric - since.metric <= 5
        assert batch.marks.transition - since.transition <= 5
        seen += [(m.name, m.step) for m in batch.metrics]
        transitions += len(batch.transitions)
        since = batch.marks
        if not batch.behind:
            break
    assert reads == 5 and since == tail.marks()
    assert seen == [(name, step) for step in range(12) for name in ("loss", "acc")]
    assert transitions == 5


def test_rows_become_the_engines_events_in_order(journal: Journal, tail: JournalTail) -> None:
    since = tail.marks()
    add_sweep(journal, "cli", OTHER_PID)
    one_run(journal, "cli", "cli-run", 2)
    batch = tail.read(since, skip_pid=os.getpid(), limit=1000)
    events = events_of(batch, _Numbers(), lambda sweep_id: False)
    assert [type(e) for e in events] == [
        SweepStarted,
        RunCreated,
        RunStateChanged,
        MetricReported,
        MetricReported,
        RunStateChanged,
        SweepFinished,
    ]
    assert [e.seq for e in events] == list(range(1, 8))
    started, created, running, first, _, ended, finished = events
    assert isinstance(started, SweepStarted) and (started.name, started.concurrency) == (
        "name-cli",
        2,
    )
    assert isinstance(created, RunCreated)
    assert (created.run_id, created.index, created.params, created.argv) == (
        "cli-run",
        0,
        {"n": 1},
        ["x"],
    )
    assert isinstance(running, RunStateChanged) and running.state == "running"
    assert isinstance(first, MetricReported) and (first.step, first.values) == (
        0,
        {"loss": 1.0, "acc": 0.0},
    )
    assert isinstance(ended, RunStateChanged)
    assert (ended.previous, ended.state, ended.exit_code, ended.outputs) == (
        "running",
        "succeeded",
        0,
        {"score": 3},
    )
    assert isinstance(finished, SweepFinished) and finished.counts == {"succeeded": 1}
    assert events_of(batch, _Numbers(), lambda sweep_id: sweep_id == "cli") == []


def test_the_watch_reads_only_when_something_was_committed(
    journal: Journal, tail: JournalTail
) -> None:
    watch = JournalWatch(journal.path, lambda event: None, lambda sweep_id: False)
    watch.start(tail)
    assert watch.read(tail) is None
    add_sweep(journal, "cli", OTHER_PID)
    one_run(journal, "cli", "cli-run", 1)
    batch = watch.read(tail)
    assert batch is not None and len(batch.transitions) == 5
    assert watch.marks == tail.marks() == Marks(batch.marks.transition, batch.marks.metric)
    assert watch.read(tail) is None
