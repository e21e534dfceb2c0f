"""Plugins are scoped to their sweep: a failure in one sweep of a long-lived process (the
daemon) switches the plugin off for that sweep only, and per-sweep state dies with the sweep."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from orchestrator.engine.build import SweepSettings, build_sweep
from orchestrator.engine.plugin_host import PluginHost
from orchestrator.engine.states import SweepState
from orchestrator.plugin import FakeExecutor, FakeRun, hookimpl
from orchestrator.spec import compile_plan, load_spec
from orchestrator.store.journal import Journal
from orchestrator.store.layout import run_paths

SPEC = """
version: 1.1
kind: operation
matrix: {kind: mapping, values: [{i: 0}, {i: 1}]}
component:
  inputs: [{name: i, type: int}]
  run: {kind: job, container: {command: [train, "{{ i }}"]}}
"""


class FailsInFirstSweep:
    """Raises on every call during the first sweep it sees, then behaves."""

    def __init__(self) -> None:
        self.first_sweep: str | None = None
        self.calls: dict[str, int] = {}
        self.memos: list[dict[str, int]] = []

    @hookimpl
    def on_run_finished(self, run: Any, ctx: Any) -> None:
        self.first_sweep = self.first_sweep or ctx.sweep_id
        self.calls[ctx.sweep_id] = self.calls.get(ctx.sweep_id, 0) + 1
        memo = ctx.per_sweep(self, dict)
        memo[run.id] = run.index
        if memo not in self.memos:
            self.memos.append(memo)
        if ctx.sweep_id == self.first_sweep:
            raise RuntimeError("broken in this sweep")


def _two_sweeps_on_one_host(
    spec: Path, home: Path, plugin: object, strict: bool = False
) -> tuple[list[str], list[SweepState]]:
    reports: list[str] = []
    host = PluginHost(strict=strict, report=reports.append)
    assert host.register(plugin, "flaky")

    async def main() -> list[SweepState]:
        journal = Journal(home / "journal.sqlite")
        try:
            states = []
            for _ in range(2):  # what the daemon does: one host, one sweep after another
                settings = SweepSettings(home=home, spec_path=str(spec), concurrency=1)
                controller = build_sweep(
                    compile_plan(load_spec(spec), paths=run_paths(home)),
                    settings,
                    journal=journal,
                    plugins=host,
                    executor=FakeExecutor(lambda job: FakeRun()),
                )
                states.append((await controller.run()).state)
            return states
        finally:
            journal.close()

    return reports, anyio.run(main)


def test_a_plugin_switched_off_in_one_sweep_is_called_again_in_the_next(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    plugin = FailsInFirstSweep()
    reports, states = _two_sweeps_on_one_host(write(SPEC), tmp_path / "home", plugin)
    assert states == [SweepState.SUCCEEDED, SweepState.SUCCEEDED]
    first, second = plugin.calls.values()
    assert first == 1, "switched off after its first failure, for the rest of that sweep"
    assert second == 2, "the next sweep calls it for every run again"
    assert len(reports) == 1 and "switched off for this sweep" in reports[0]


def test_per_sweep_state_is_fresh_for_each_sweep(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    plugin = FailsInFirstSweep()
    _two_sweeps_on_one_host(write(SPEC), tmp_path / "home", plugin)
    assert [len(memo) for memo in plugin.memos] == [1, 2]


def test_strict_failure_fails_only_its_own_sweep(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    plugin = FailsInFirstSweep()
    reports, states = _two_sweeps_on_one_host(write(SPEC), tmp_path / "home", plugin, strict=True)
    assert states == [SweepState.FAILED, SweepState.SUCCEEDED]
    assert "stopping the sweep (--strict-plugins)" in reports[0]
