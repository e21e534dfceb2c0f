"""The end of a big sweep: the final ``--json`` streamed (same bytes), a summary instead of a
row per run past SUMMARY_ABOVE runs, and the journal read by key, page after page."""

import io
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator import reporting
from orchestrator.engine.records import JournalRuns, RunRecord
from orchestrator.engine.states import RunState
from orchestrator.reporting import (
    Objective,
    summary_json,
    summary_table,
    write_final_table,
    write_summary_json,
)
from orchestrator.spec.resolve import RunSpec
from orchestrator.store.journal import Journal
from tests.conftest import CliResult


def record(i: int, state: RunState = RunState.SUCCEEDED, reason: str | None = None) -> RunRecord:
    spec = RunSpec(index=i, uuid=f"r{i}", params={"i": i, "fixed": 7}, argv=[], env={},
                   working_dir=None)  # fmt: skip
    return RunRecord(
        id=f"r{i}", index=i, spec=spec, state=state, reason=reason, exit_code=0,
        started_at=100.0, finished_at=101.5, metrics={"loss": 1 / (i + 1)},
    )  # fmt: skip


def streamed(sweep_id: str, state: str, runs: Any) -> str:
    out = io.StringIO()
    write_summary_json(out, sweep_id, state, runs)
    return out.getvalue()


@pytest.mark.parametrize("count", [0, 1, 2, 255, 256, 257, 1000])
def test_streamed_json_is_byte_for_byte_the_summary(count: int) -> None:
    runs = [record(i) for i in range(count)]
    runs[-1:] = [record(count - 1, RunState.FAILED, 'exit code 3: "quoted" é')] if count else []
    assert streamed("abc", "failed", runs) == summary_json("abc", "failed", runs)


def test_a_big_sweep_prints_a_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    long = "early stopping: run 3 reported loss = 0.25 (<= 0.3) at step 1, and the rest"
    runs = [record(i) for i in range(2500)]
    runs[3] = record(3, RunState.FAILED, "exit code 3")
    for i in (1500, 1600, *range(2000, 2020)):
        runs[i] = record(i, RunState.STOPPED, long)
    out = io.StringIO()
    objective = Objective("loss", "minimize")
    write_final_table(out, runs, total=3000, objective=objective, show="orchestrator show abc")
    text = out.getvalue()
    lines = text.splitlines()
    assert len(lines) < 40
    assert lines[0].split() == ["#", "state", "duration", "outputs", "params"]
    shown = [line.split()[0] for line in lines[1:22] if line[:1].isdigit()]
    assert shown == [*map(str, range(10)), *map(str, range(2490, 2500))]
    assert "... 2,480 more (all of them: orchestrator show abc)" in lines
    assert lines[1].split()[-1] == "i=0"  # ``fixed`` is the same everywhere: not a column
    assert "2,500 runs: 1 failed, 22 stopped, 2,477 succeeded" in lines
    assert "500 of 3,000 runs not started" in lines
    assert "same in every run: fixed=7" in lines
    assert "best run by loss (minimize): #2499 loss=0.0004 (i=2499)" in lines
    listed = " ".join(f"#{i}" for i in (1500, 1600, *range(2000, 2008)))
    assert f"early stop ({listed} and 12 more): {long}" in lines


def test_a_sweep_up_to_the_threshold_prints_every_row() -> None:
    runs = [record(i) for i in range(reporting.SUMMARY_ABOVE)]
    out = io.StringIO()
    write_final_table(out, runs, total=None, objective=None, show="x")
    assert out.getvalue() == summary_table(runs)


# ----------------------------------------------------------------- the journal, page by page
def journal_with(home: Path, configurations: int) -> tuple[Journal, str]:
    """A journal with one sweep: every 7th configuration retried (its newest attempt is the
    one read), one retried at another index (a spec changed between resumes)."""
    journal = Journal(home / "journal.sqlite")
    journal.add_sweep(
        "s1", name=None, description=None, tags=[], spec_path="x.yaml", kind="grid",
        total=configurations, concurrency=1, pid=1, seed=None,
    )  # fmt: skip
    rows = []
    for i in range(configurations):
        for attempt in (1, 2) if i % 7 == 0 else (1,):
            idx = 0 if (i, attempt) == (21, 2) else i
            rows.append((f"r{i}-{attempt}", "s1", idx, f"h{i}", json.dumps({"i": i}), "[]",
                         "succeeded", attempt, 1000.0 + i + attempt / 10, f"h{i}"))  # fmt: skip
    conn = sqlite3.connect(home / "journal.sqlite")
    with conn:
        conn.executemany(
            "INSERT INTO runs (id, sweep_id, idx, config_hash, params, argv, state, attempt, "
            "created_at, params_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    conn.close()
    return journal, "s1"


def test_journal_runs_read_pages_by_key_in_matrix_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal, sweep_id = journal_with(tmp_path, 1050)
    try:
        monkeypatch.setattr(JournalRuns, "PAGE", 100)
        statements: list[str] = []
        runs = JournalRuns(journal, sweep_id)
        expected = [row.id for row in journal.latest_runs(sweep_id)]
        journal._read.set_trace_callback(statements.append)
        got = [r.id for r in runs]
        journal._read.set_trace_callback(None)
        assert got == expected and len(got) == 1050
        assert got[:2] == ["r0-2", "r21-2"]  # the newest attempts, the moved one by its index
        pages = [s for s in statements if "FROM runs r" in s]
        assert len(pages) == 11
        assert not any("OFFSET" in s for s in pages)  # each page starts from a key
        assert len(runs) == 1050 and runs[-1].id == expected[-1]
    finally:
        journal.close()


def test_streamed_json_of_journal_runs_is_the_summary(tmp_path: Path) -> None:
    journal, sweep_id = journal_with(tmp_path, 300)
    try:
        runs = JournalRuns(journal, sweep_id)
        assert streamed(sweep_id, "succeeded", runs) == summary_json(
            sweep_id, "succeeded", list(runs)
        )
    finally:
        journal.close()


# ----------------------------------------------------------------- through the command line
def test_run_prints_a_summary_past_the_threshold(
    write: Callable[..., Path],
    cli: Callable[..., CliResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reporting, "SUMMARY_ABOVE", 5)
    monkeypatch.setattr(reporting, "SUMMARY_ENDS", 2)
    values = ", ".join(f"{{i: {i}}}" for i in range(8))
    command = f'["{sys.executable}", -c, "pass", "{{{{ i }}}}"]'
    spec = write(f"""
        version: 1.1
        kind: operation
        matrix: {{kind: mapping, concurrency: 4, values: [{values}]}}
        component:
          inputs: [{{name: i, type: int}}]
          run: {{kind: job, container: {{command: {command}}}}}
    """)
    home = str(tmp_path / "home")
    ran = cli("run", str(spec), "--nocache", "--home", home)
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert [line.split()[0] for line in lines[1:6]] == ["0", "1", "...", "6", "7"]
    assert lines[3].startswith("... 4 more (all of them: ") and f"--home {home}" in lines[3]
    assert "8 runs: 8 succeeded" in lines
    as_json = cli("run", str(spec), "--nocache", "--home", home, "--json")
    body = json.loads(as_json.out)
    assert [r["params"] for r in body["runs"]] == [{"i": i} for i in range(8)]
