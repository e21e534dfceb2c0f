"""The journal when writes fail (a full disk): what is lost, who is told, how it recovers; and
ids found by prefix without ``LIKE`` wildcards."""

from __future__ import annotations

import queue
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.exceptions import NotFoundError, StoreError
from orchestrator.store.journal import Journal
from tests.journal_faults import FULL, DiskFull

#: Seconds any wait below may take before the test fails (nothing sleeps: each one waits on
#: a queue or an event).
WAIT = 10


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> DiskFull:
    monkeypatch.setattr(Journal, "RETRY_S", 0.02)  # the writer tries again at once
    return DiskFull().install(monkeypatch)


@pytest.fixture
def journal(tmp_path: Path, disk: DiskFull) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite")
    yield j
    disk.stop()
    j.close()


def _sweep(journal: Journal, sweep_id: str) -> None:
    journal.add_sweep(
        sweep_id,
        name=None,
        description=None,
        tags=[],
        spec_path="spec.yaml",
        kind="mapping",
        total=1,
        concurrency=1,
        pid=1,
        seed=None,
    )


def _run(journal: Journal, run_id: str, sweep_id: str) -> None:
    journal.add_run(run_id, sweep_id, 0, "c", "{}", "[]", f"/runs/{run_id}", "p")


def test_a_full_disk_fails_the_sweeps_it_touched_and_the_writer_recovers(
    journal: Journal, disk: DiskFull
) -> None:
    health: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    told: queue.SimpleQueue[str] = queue.SimpleQueue()
    journal.on_health(health.put)
    _sweep(journal, "s1")
    _sweep(journal, "bystander")
    journal.flush_sync(sweep_id="s1")
    journal.watch("s1", told.put)

    disk.start()
    _run(journal, "r1", "s1")
    journal.set_sweep_state("s1", "failed", "journal write failed", finished=True)
    with pytest.raises(StoreError, match=f"journal write failed: {FULL}"):
        journal.flush_sync()
    assert health.get(timeout=WAIT) == FULL, "the writer says it cannot write"
    assert told.get(timeout=WAIT) == FULL, "the sweep whose write was lost is told"
    assert journal.write_error == FULL and journal.lost("s1") == FULL
    assert journal.lost("bystander") is None, "a sweep that wrote nothing lost nothing"
    _sweep(journal, "s2")
    with pytest.raises(StoreError, match=FULL):
        journal.flush_sync(sweep_id="s2")  # what a submission waits on: it is not accepted
    journal.flush_sync(sweep_id="bystander")

    disk.stop()
    assert health.get(timeout=WAIT) is None, "the writer writes again, unprompted"
    assert journal.write_error is None
    journal.flush_sync()
    s1 = journal.find_sweep("s1")
    assert (s1.state, s1.reason) == ("failed", "journal write failed"), "final state retried"
    assert journal.runs_of("s1") == [], "the run's record was dropped, not written late"
    with pytest.raises(NotFoundError):
        journal.find_sweep("s2")  # never accepted, never written
    _sweep(journal, "s3")
    journal.flush_sync(sweep_id="s3")
    assert journal.find_sweep("s3").state == "created", "normal service"
    assert journal.lost("s1") == FULL, "kept until the sweep's controller forgets it"
    journal.forget("s1")
    assert journal.lost("s1") is None


def test_metrics_and_outputs_count_against_their_run_s_sweep(
    journal: Journal, disk: DiskFull
) -> None:
    _sweep(journal, "s1")
    _run(journal, "r1", "s1")
    journal.flush_sync(sweep_id="s1")
    disk.start()
    journal.add_metrics("r1", 1, {"loss": 0.5})
    journal.set_output("r1", "best", 1)
    journal.flush_sync(check=False)
    assert journal.lost("s1") == FULL


def test_writes_made_together_are_lost_together(journal: Journal, disk: DiskFull) -> None:
    _sweep(journal, "s1")
    journal.set_sweep_state("s1", "failed", "before", finished=True)
    journal.flush_sync()

    def second_statement(sql: str, rows: list[tuple[Any, ...]]) -> bool:
        return sql.startswith("UPDATE sweeps SET state")  # the reopen before it went through

    disk.trigger = second_statement
    with journal.together("s1"):
        journal.reopen_sweep("s1", pid=2, total=1, concurrency=1, component_hash="h")
        journal.set_sweep_state("s1", "running", "resumed", finished=False)
    with pytest.raises(StoreError, match=FULL):
        journal.flush_sync(sweep_id="s1")
    disk.stop()
    journal.flush_sync(check=False)
    row = journal.find_sweep("s1")
    assert (row.state, row.pid) == ("failed", 1), "neither half of the record was written"


def test_accepting_a_sweep_syncs_the_wal_and_transitions_do_not(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = journal._write

    class Recording:
        def execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
            calls.append(sql)
            return real.execute(sql, params)

        def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> sqlite3.Cursor:
            calls.append(sql.split(" (")[0])
            return real.executemany(sql, rows)

        def close(self) -> None:
            real.close()

    monkeypatch.setattr(journal, "_write", Recording())
    _sweep(journal, "s1")
    journal.flush_sync()
    accepted, calls[:] = list(calls), []
    _run(journal, "r1", "s1")
    journal.flush_sync()
    assert accepted[0] == "PRAGMA synchronous=FULL" and accepted[-1] == "PRAGMA synchronous=NORMAL"
    assert not any(call.startswith("PRAGMA") for call in calls), calls


def test_like_wildcards_in_a_prefix_match_only_themselves(journal: Journal) -> None:
    for sweep_id in ("a_b1", "axb2", "a%c3", "abc4", "a\\d5"):
        _sweep(journal, sweep_id)
    for run_id in ("r_1", "rx2", "r%3"):
        _run(journal, run_id, "abc4")
    journal.flush_sync()
    assert journal.find_sweep("a_").id == "a_b1", "_ is not 'any one character'"
    assert journal.find_sweep("a%").id == "a%c3", "% is not 'anything'"
    assert journal.find_sweep("a\\").id == "a\\d5"
    with pytest.raises(NotFoundError, match="no sweep matches"):
        journal.find_sweep("_")
    with pytest.raises(NotFoundError, match="no sweep matches"):
        journal.find_sweep("%")
    assert journal.find_run("r_").id == "r_1"
    assert journal.find_run("r%").id == "r%3"
    with pytest.raises(NotFoundError, match="no run matches"):
        journal.find_run("%")
    with pytest.raises(NotFoundError, match="matches 5 sweeps"):
        journal.find_sweep("a")  # a real prefix still matches every sweep it starts
