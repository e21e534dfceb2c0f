"""``--strict-plugins``: a plugin failing in its sweep-finished hook fails the sweep. The command
exits 1, says ``failed`` with the plugin's error, and the journal says failed too."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engine.events import SweepFinished, SweepStopping
from orchestrator.engine.states import SweepState
from orchestrator.hooks import hookimpl
from orchestrator.testing import FakeRun, run_fake_sweep
from tests.conftest import CliResult

SPEC = """
    version: 1.1
    kind: component
    run: {kind: job, container: {command: [/bin/true]}}
"""
BROKEN = """
from orchestrator.plugin import hookimpl

@hookimpl
def on_sweep_finished(event):
    raise RuntimeError("boom")
"""
REASON = "plugin 'broken': on_sweep_finished raised RuntimeError: boom"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin installed as ``pip install`` would: its module and a dist-info entry point."""
    site = tmp_path / "site"
    dist = site / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[orchestrator.plugins]\nbroken = broken_plugin\n")
    (site / "broken_plugin.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(site))


def _journaled(home: Path) -> tuple[str, str | None]:
    with sqlite3.connect(home / "journal.sqlite") as db:
        state, reason = db.execute("SELECT state, reason FROM sweeps").fetchone()
    return state, reason


def test_strict_failure_on_sweep_finished_fails_the_sweep(
    installed: None, cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    home = tmp_path / "h"
    spec = write(SPEC)
    result = cli("run", str(spec), "--plugin", "broken", "--strict-plugins", "--home", str(home))
    assert result.code == 1, result.err
    assert result.out.rstrip().endswith(f"failed ({REASON})")
    assert "succeeded" not in result.out.splitlines()[-1]
    assert f"{REASON}; stopping the sweep (--strict-plugins)" in result.err
    assert _journaled(home) == ("failed", REASON)


def test_without_strict_the_plugin_is_switched_off_and_the_sweep_succeeds(
    installed: None, cli: Callable[..., CliResult], write: Callable[..., Path], tmp_path: Path
) -> None:
    home = tmp_path / "h"
    result = cli("run", str(write(SPEC)), "--plugin", "broken", "--home", str(home))
    assert result.code == 0, result.err
    assert f"{REASON}; switched off for this sweep" in result.err
    assert _journaled(home) == ("succeeded", None)


def test_everyone_else_hears_the_end_the_journal_holds(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    class Broken:
        @hookimpl
        def on_sweep_finished(self, event: Any) -> None:
            raise RuntimeError("boom")

    result, events = run_fake_sweep(
        write(SPEC), lambda job: FakeRun(), plugins=[Broken()], strict=True, home=tmp_path
    )
    assert (result.state, result.reason) == (SweepState.FAILED, REASON.replace("broken", "Broken"))
    stopping, finished = events[-2:]
    assert isinstance(stopping, SweepStopping) and isinstance(finished, SweepFinished)
    assert finished.state is SweepState.FAILED and finished.seq > stopping.seq
    assert _journaled(tmp_path) == ("failed", result.reason)
