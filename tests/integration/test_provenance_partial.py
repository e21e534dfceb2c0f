"""An invocation's provenance is collected while its first runs start: what is known at once
is journaled before its first run, so an orchestrator killed before the rest came leaves
its runs with a record of their own invocation, marked incomplete, never an earlier one's."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult
from tests.git_repo import committed_repo
from tests.procwait import gone_within

ROOT = Path(__file__).resolve().parents[2]

SPEC = """\
version: 1.1
kind: operation
matrix: {{kind: mapping, values: [{values}]}}
component:
  inputs: [{{name: n, type: int}}]
  run: {{kind: job, container: {{command: ["{python}", -c, "print({{{{ n }}}})"]}}}}
"""

#: ``python -m orchestrator ARGS`` whose provenance collection never answers: once a run
#: of it is running and the journal has committed what was queued meanwhile, it says
#: "held" and waits (the test kills it there).
HELD = """
import sys, threading
from orchestrator.cli import main
from orchestrator.engine import sweep
from orchestrator.engine.states import RunState
from orchestrator.store.journal import Journal

journals, running = [], threading.Event()
opened, moved = Journal.__init__, sweep.move_run

def init(self, *args, **kwargs):
    opened(self, *args, **kwargs)
    journals.append(self)

def move_run(*args, **kwargs):
    event = moved(*args, **kwargs)
    if args[3] is RunState.RUNNING:
        running.set()
    return event

def collect(folder, environment):
    assert running.wait(60)
    for journal in journals:
        journal.flush_sync(60, check=False)
    print("held", flush=True)
    sys.stdin.read()

Journal.__init__, sweep.move_run, sweep.collect = init, move_run, collect
raise SystemExit(main(sys.argv[1:]))
"""


def _spec(repo: Path, n: int) -> Path:
    values = ", ".join(f"{{n: {i}}}" for i in range(n))
    path = repo / "spec.yaml"
    path.write_text(SPEC.format(values=values, python=sys.executable))
    return path


def test_a_resumed_sweep_killed_while_collecting_shows_its_own_incomplete_record(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    repo = committed_repo(tmp_path / "project", {"train.py": "print(1)\n"})
    home = str(tmp_path / "home")
    first = cli(str(_spec(repo, 1)), "--json", "--home", home)
    assert first.code == 0, first.err
    sweep = json.loads(first.out)["sweep"]
    _spec(repo, 2)  # one configuration more: the resumed invocation runs it
    held = subprocess.Popen(
        [sys.executable, "-c", HELD, "resume", sweep, "--home", home],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "INVOCATION": "second"},
    )
    try:
        assert held.stdout is not None
        assert held.stdout.readline() == "held\n"
        live = json.loads(cli("show", f"{sweep}:1", "--home", home, "--json").out)
        assert live["provenance"]["missing"] == "being collected"
    finally:
        held.send_signal(signal.SIGKILL)
        assert gone_within(held.pid, 30)
        held.communicate(timeout=30)

    newer = json.loads(cli("show", f"{sweep}:1", "--home", home, "--json").out)["provenance"]
    assert newer["environment"].get("INVOCATION") == "second", "the second invocation's"
    older = json.loads(cli("show", f"{sweep}:0", "--home", home, "--json").out)["provenance"]
    assert older["collected"] is True and older["git_commit"] and older["packages"]
    assert "INVOCATION" not in older["environment"]
    assert newer["at"] > older["at"]
    assert newer["collected"] is False
    assert newer["git_commit"] is None and newer["packages"] is None
    assert newer["python"] == sys.executable and newer["host"]
    assert newer["missing"] == "the orchestrator stopped before it was collected"
    text = cli("show", f"{sweep}:1", "--home", home).out
    assert "not recorded (the orchestrator stopped before it was collected)" in text

    # The next invocation's record is collected, and replaces its part known at once.
    again = cli("resume", sweep, "--home", home)
    assert again.code == 0, again.err
    rows = _provenance_rows(Path(home))
    assert [collected for _, collected in rows] == [True, False, True]


def _provenance_rows(home: Path) -> list[tuple[float, bool]]:
    """Each journaled invocation's start and whether its record was collected."""
    with sqlite3.connect(home / "journal.sqlite") as conn:
        rows = conn.execute("SELECT at, record FROM provenance ORDER BY at").fetchall()
    return [(at, json.loads(record).get("collected", True)) for at, record in rows]


def test_a_record_that_could_not_be_collected_says_why(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.engine import sweep as sweep_module

    def broken(folder: Path, environment: Any) -> Any:
        raise RuntimeError("a broken distribution")

    monkeypatch.setattr(sweep_module, "collect", broken)
    home = str(tmp_path / "home")
    assert cli(str(_spec(tmp_path, 1)), "--home", home).code == 0
    made = json.loads(cli("show", "last:0", "--home", home, "--json").out)["provenance"]
    assert made is not None and made["collected"] is False and made["host"]
    assert "could not be collected" in made["missing"]
    assert "a broken distribution" in made["missing"]
