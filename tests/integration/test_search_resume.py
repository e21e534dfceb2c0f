"""kill -9 in the middle of an adaptive search, then ``resume``: the search continues where it
was, no configuration runs twice, and it ends with exactly the runs an uninterrupted search
with the same seed makes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.integration.test_faults import Events

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "tests" / "components" / "quadratic.py"

SPEC = """\
version: 1.1
kind: operation
matrix:
  kind: hyperband
  concurrency: 3
  maxIterations: 9
  eta: 3
  seed: 11
  resource: {{name: epochs, type: int}}
  metric: {{name: loss, optimization: minimize}}
  params:
    x: {{kind: uniform, value: [0, 1]}}
component:
  inputs: [{{name: x, type: float}}, {{name: epochs, type: int}}]
  run:
    kind: job
    container:
      command: ["{python}", "{component}", "{{{{ x }}}}", "{{{{ epochs }}}}", "{events}"]
"""

#: maxIterations 9, eta 3: brackets of 9@1 → 3@3 → 1@9, 5@3 → 1@9, and 3@9.
TOTAL = 9 + 3 + 1 + 5 + 1 + 3


def _suggested(home: Path) -> list[tuple[float, int]]:
    with sqlite3.connect(home / "journal.sqlite") as db:
        rows = db.execute("SELECT params FROM suggestions ORDER BY idx").fetchall()
    return sorted((p["x"], p["epochs"]) for p in (json.loads(row[0]) for row in rows))


def test_kill_9_mid_search_then_resume_finishes_the_same_search_once(
    tmp_path: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    events_path = tmp_path / "events"
    spec = tmp_path / "hb.yaml"
    spec.write_text(SPEC.format(python=sys.executable, component=COMPONENT, events=events_path))
    whole = cli("run", str(spec), "--home", str(tmp_path / "whole"), "--json")
    assert whole.code == 0, whole.err
    expected = _suggested(tmp_path / "whole")
    assert len(expected) == TOTAL

    markers, home = tmp_path / "markers.txt", tmp_path / "home"
    events = Events(events_path)
    with open(tmp_path / "run.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run", str(spec), "--home", str(home)],
            stdout=log,
            stderr=log,
            cwd=ROOT,
            env={**os.environ, "QUADRATIC_MARKERS": str(markers)},
        )
    try:
        deadline = time.monotonic() + 60
        for _ in range(11):  # past the first rung of the first bracket
            events.next(deadline)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        monkeypatch.setenv("QUADRATIC_MARKERS", str(markers))
        resumed = cli("resume", "last", "--home", str(home), "--json")
    finally:
        proc.kill()
        proc.wait(10)
        events.close()
    assert resumed.code == 0, resumed.err + (tmp_path / "run.log").read_text()
    final = json.loads(resumed.out)["runs"]
    assert {r["state"] for r in final} == {"succeeded"}
    assert all(r["place"] is not None for r in final)  # those from before the kill too
    assert _suggested(home) == expected
    # A configuration that ran to its end before the kill never ran again, unless its output
    # was lost with the orchestrator (it exited 0 unread: the search needs its result).
    ran = Counter(markers.read_text().splitlines())
    assert len(ran) == TOTAL
    with sqlite3.connect(home / "journal.sqlite") as db:
        unread = {
            f"{p['x']} {p['epochs']}"
            for (p,) in (
                (json.loads(row[0]),)
                for row in db.execute(
                    "SELECT params FROM runs r WHERE reason = 'recovered_exit_status' AND NOT "
                    "EXISTS (SELECT 1 FROM metrics m WHERE m.run_id = r.id)"
                )
            )
        }
    assert {config for config, n in ran.items() if n > 1} <= unread, ran
