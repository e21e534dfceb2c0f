"""History at scale: the newest attempt of each configuration found through an index, counts
by state added up by SQLite, pages of a sweep's runs (read model, CLI and the daemon's API),
and journals written before the index existed getting it when opened."""

from __future__ import annotations

import itertools
import json
import sqlite3
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.engine.records import record_from_row
from orchestrator.history import run_row, sweep_detail, sweep_items
from orchestrator.store import journal as journal_module
from orchestrator.store.journal import Journal
from orchestrator.store.layout import journal_path
from orchestrator.store.rows import RunRow
from tests.integration.test_daemon import Daemon, daemon

__all__ = ["daemon"]  # the fixture, used by name

#: Configurations of the sweep built below; every third has a failed first attempt.
CONFIGS = 12


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's ``time.time()``: 1000, 1001, ... (every record strictly newer)."""
    ticks = itertools.count(1000.0)
    fake = types.SimpleNamespace(time=lambda: next(ticks), monotonic=lambda: 0.0)
    monkeypatch.setattr(journal_module, "time", fake)


def build(home: Path, sweep_id: str = "sweep-big") -> None:
    """A finished sweep of CONFIGS configurations: retried ones, outputs, metrics, one run
    still running (no duration yet)."""
    journal = Journal(journal_path(home))
    journal.add_sweep(
        sweep_id,
        name="big",
        description=None,
        tags=[],
        spec_path="big.yaml",
        kind="grid",
        total=CONFIGS + 2,
        concurrency=2,
        pid=1,
        seed=None,
    )
    for i in range(CONFIGS):
        attempts = 2 if i % 3 == 0 else 1
        for attempt in range(1, attempts + 1):
            run_id = f"run-{i:02d}-{attempt}"
            journal.add_run(run_id, sweep_id, i, f"c{i}", json.dumps({"x": i}), "[]", "", f"p{i}")
            journal.record_transition(
                sweep_id, run_id, "created", "running", None, None, attempt, started=True
            )
            if i == CONFIGS - 1 and attempt == attempts:
                continue  # still running
            state = "failed" if attempt < attempts or i % 4 == 1 else "succeeded"
            journal.record_transition(
                sweep_id, run_id, "running", state, None, 0, attempt, finished=True
            )
            journal.add_metrics(run_id, 1, {"loss": float(CONFIGS - i)})
            if i % 2 == 0:
                journal.set_output(run_id, "acc", i / 10)
    journal.set_sweep_state(sweep_id, "failed", "runs failed", finished=True)
    journal.flush_sync()
    journal.close()


@pytest.fixture
def home(tmp_path: Path, clock: None) -> Path:
    build(tmp_path)
    return tmp_path


@pytest.fixture
def journal(home: Path) -> Iterator[Journal]:
    j = Journal(journal_path(home))
    yield j
    j.close()


def test_a_journal_from_before_the_index_gets_it_when_opened(tmp_path: Path) -> None:
    path = journal_path(tmp_path)
    Journal(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX runs_latest")  # as an older version left it: one with no
        conn.execute("PRAGMA user_version = 0")  # journal version either
    Journal(path).close()
    with sqlite3.connect(path) as conn:
        (columns,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'runs_latest'"
        ).fetchone()
    assert "(sweep_id, params_hash, created_at)" in columns


def test_the_newest_attempts_are_read_through_the_index(journal: Journal) -> None:
    """No correlated subquery per run (quadratic at 50,000 runs): one search of the index
    per configuration."""
    sql, params = journal_module._LATEST, ("sweep-big", "sweep-big")
    plan = journal._read.execute(f"EXPLAIN QUERY PLAN SELECT r.id FROM runs r {sql}", params)
    steps = " | ".join(row[-1] for row in plan)
    assert "CORRELATED" not in steps
    assert "runs_latest" in steps


def test_counts_by_state_are_those_of_the_newest_attempts(journal: Journal) -> None:
    newest = journal.latest_runs("sweep-big")
    assert [r.idx for r in newest] == list(range(CONFIGS))
    assert all(r.attempt == (2 if r.idx % 3 == 0 else 1) for r in newest)
    by_hand: dict[str, int] = {}
    for run in newest:
        by_hand[run.state] = by_hand.get(run.state, 0) + 1
    assert (
        journal.latest_state_counts("sweep-big")
        == by_hand
        == {
            "failed": 3,
            "running": 1,
            "succeeded": 8,
        }
    )
    (item,) = sweep_items(journal, 10)
    assert item["counts"] == by_hand
    assert journal.latest_state_counts("no-such-sweep") == {}


def test_show_rows_are_those_of_the_run_records(journal: Journal) -> None:
    """``show`` builds its rows from the journal's rows, not through a RunRecord each: the
    same rows as before, the running run without a duration."""
    rows = journal.latest_runs("sweep-big")
    ids = [r.id for r in rows]
    outputs, metrics = journal.outputs_of(ids), journal.last_metrics(ids)
    records = [record_from_row(r, outputs.get(r.id, {}), metrics.get(r.id, {})) for r in rows]
    expected = [run_row(r) | {"attempt": r.attempt} for r in records]
    running = [r for r in expected if r["state"] == "running"]
    shown = sweep_detail(journal, "last")["runs"]
    for row in [*expected, *shown]:
        if row["state"] == "running":
            row["duration_s"] = "ticking"  # measured against the clock: differs by a tick
    assert shown == expected and len(running) == 1


@pytest.mark.parametrize("every_attempt", [False, True])
@pytest.mark.parametrize("sort", [None, "-loss", "acc"])
def test_pages_cover_the_runs_once_in_order(
    journal: Journal, every_attempt: bool, sort: str | None
) -> None:
    whole = sweep_detail(journal, "sweep-big", sort=sort, every_attempt=every_attempt)
    assert "runs_total" not in whole, "unpaged answers are as they were"
    pages, offset = [], 0
    while offset is not None:
        page = sweep_detail(
            journal, "sweep", sort=sort, every_attempt=every_attempt, limit=5, offset=offset
        )
        assert page["runs_total"] == len(whole["runs"])
        assert len(page["runs"]) <= 5
        pages += page["runs"]
        offset = page["next_offset"]
    assert [r["id"] for r in pages] == [r["id"] for r in whole["runs"]]
    beyond = sweep_detail(journal, "sweep-big", every_attempt=every_attempt, offset=100)
    assert (beyond["runs"], beyond["next_offset"]) == ([], None)


def test_show_takes_limit_and_offset(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["show", "last", "--json", "--limit", "4", "--offset", "10", "--home", str(home)])
    body = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [r["index"] for r in body["runs"]] == [10, 11]
    assert (body["runs_total"], body["next_offset"]) == (CONFIGS, None)
    assert main(["show", "last", "--limit", "-1", "--home", str(home)]) == 2
    assert "--limit and --offset must be >= 0" in capsys.readouterr().err


def test_the_api_pages_a_sweeps_runs(daemon: Daemon, clock: None) -> None:
    build(daemon.home, "sweep-api")  # beside the running daemon's own journal writes
    with daemon.unix() as client:
        page = client.get("/api/v1/sweeps/sweep-api", params={"limit": "5", "offset": "5"})
        assert page.status_code == 200
        body = page.json()
        assert [r["index"] for r in body["runs"]] == list(range(5, 10))
        assert (body["runs_total"], body["next_offset"]) == (CONFIGS, 10)
        whole = client.get("/api/v1/sweeps/sweep-api").json()
        assert len(whole["runs"]) == CONFIGS and "next_offset" not in whole
        listed = client.get("/api/v1/sweeps").json()
        assert listed[0]["counts"] == {"failed": 3, "running": 1, "succeeded": 8}
        bad = client.get("/api/v1/sweeps/sweep-api", params={"limit": "-3"})
        assert bad.status_code == 400
        assert bad.json() == {"error": "limit must be a whole number >= 0, got '-3'"}


def test_rows_decode_what_json_dumps_writes() -> None:
    """Rows are decoded by msgspec, with :mod:`json` for what only it reads (NaN)."""
    columns = list(RunRow.__struct_fields__)
    values: list[object] = [None] * len(columns)
    values[columns.index("params")] = json.dumps({"lr": float("nan"), "n": 10**30, "s": "é"})
    values[columns.index("argv")] = json.dumps(["a", "b"])
    row = RunRow.from_db(tuple(values))
    assert row.params["n"] == 10**30 and row.params["s"] == "é"
    assert row.params["lr"] != row.params["lr"] and row.argv == ["a", "b"]
