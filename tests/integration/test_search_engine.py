"""The engine drives an adaptive search: it asks as slots free, waits while the searcher
waits, tells every result, journals each suggestion and where it sits."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.integration.test_daemon import Daemon, daemon, sse

__all__ = ["daemon"]  # the fixture, used by name

SPEC = """\
version: 1.1
kind: operation
matrix:
  kind: iterative
  maxIterations: 2
  concurrency: 2
  tuner: {{hubRef: ladder}}
  params:
    x: {{kind: uniform, value: [0, 5]}}
component:
  inputs: [{{name: x, type: float}}]
  run:
    kind: job
    container:
      command: ["{python}", "-c", "{script}"]
"""
SCRIPT = "from orchestrator.tracking import log_metrics; log_metrics(loss=({{ x }} - 2) ** 2)"


@pytest.fixture
def ladder_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What installing a package with an ``orchestrator.searchers`` entry point leaves."""
    dist = tmp_path / "site" / "ladder_search-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ladder-search\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        "[orchestrator.searchers]\nladder = tests.searchers.ladder:factory\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def test_a_plugin_searcher_is_asked_told_and_journaled(
    ladder_installed: None, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    spec = tmp_path / "ladder.yaml"
    spec.write_text(SPEC.format(python=sys.executable, script=SCRIPT))
    home = tmp_path / "home"
    result = cli("run", str(spec), "--home", str(home), "--json")
    assert result.code == 0, result.err
    runs = json.loads(result.out)["runs"]
    xs = [run["params"]["x"] for run in sorted(runs, key=lambda r: r["index"])]
    # The second round was suggested from the first round's results: around x=2.5, the best.
    assert xs == [1.0, 2.5, 4.0, 2.0, 3.0]
    assert {run["state"] for run in runs} == {"succeeded"}
    with sqlite3.connect(home / "journal.sqlite") as db:
        places = db.execute("SELECT idx, place FROM suggestions ORDER BY idx").fetchall()
    assert [json.loads(place)["round"] for _, place in places] == [0, 0, 0, 1, 1]


def test_an_unknown_kind_plugin_error_is_one_line(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        SPEC.format(python=sys.executable, script=SCRIPT).replace(
            "maxIterations: 2", "maxIterations: 0"
        )
    )
    result = cli("run", str(spec), "--home", str(tmp_path / "home"))
    assert result.code == 2
    assert result.err.count("\n") == 1 and "matrix.maxIterations" in result.err


def test_rerun_of_an_adaptive_search_is_refused_in_one_line(
    ladder_installed: None, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    spec = tmp_path / "ladder.yaml"
    spec.write_text(SPEC.format(python=sys.executable, script=SCRIPT))
    home = str(tmp_path / "home")
    assert cli("run", str(spec), "--home", home).code == 0
    again = cli("rerun", "last", "--failed", "--home", home)
    assert again.code == 2
    assert again.err.count("\n") == 1 and "cannot re-run chosen runs" in again.err


def test_the_daemon_runs_an_adaptive_search(daemon: Daemon, tmp_path: Path) -> None:
    """A hyperband sweep submitted to the daemon: its suggestions, their places and the
    schedule's total, through the API."""
    from tests.integration.test_search_resume import COMPONENT
    from tests.integration.test_search_resume import SPEC as HYPERBAND

    text = HYPERBAND.format(python=sys.executable, component=COMPONENT, events=tmp_path / "x")
    with daemon.unix() as client, client.stream("GET", "/api/v1/events") as events:
        answer = client.post("/api/v1/sweeps", json={"spec": text})
        assert answer.status_code == 201, answer.text
        sweep, total = answer.json()["sweep"], answer.json()["runs"]
        assert total == 22
        for kind, data in sse(events):
            if kind == "SweepFinished" and json.loads(data)["sweep_id"] == sweep:
                assert json.loads(data)["counts"] == {"succeeded": 22}
                break
        else:
            raise AssertionError("stream ended without SweepFinished")
        runs = client.get(f"/api/v1/sweeps/{sweep}").json()["runs"]
    assert sorted({(r["place"]["bracket"], r["place"]["rung"]) for r in runs}) == [
        (0, 0),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
        (2, 2),
    ]
