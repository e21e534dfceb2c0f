"""The lean per-run path: events go only where a plugin or display uses them, observers get
them in batches, and finished runs leave memory (issue 14, items 1 and 2)."""

from __future__ import annotations

import gc
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from orchestrator_plugins import (  # type: ignore[import-not-found]
    cache as cache_plugin,
)
from orchestrator_plugins import (
    early_stopping,
)

from orchestrator.engine.build import SweepSettings, build_sweep
from orchestrator.engine.bus import EventBus
from orchestrator.engine.events import (
    MetricReported,
    RunCreated,
    RunStateChanged,
    SweepFinished,
    SweepStopping,
)
from orchestrator.engine.plugin_host import PluginHost
from orchestrator.engine.records import RunRecord, SweepResult
from orchestrator.engine.states import RunState, SweepState
from orchestrator.engine.sweep import SweepController
from orchestrator.hooks import Defer, hookimpl
from orchestrator.reporting import Reporter, summary_json, summary_table
from orchestrator.spec import compile_plan, load_spec
from orchestrator.store.journal import Journal
from orchestrator.store.layout import run_paths
from orchestrator.testing import FakeExecutor, FakeRun, run_fake_sweep

GRID = """
version: 1.1
kind: operation
matrix:
  kind: grid
  params: {{i: {{kind: range, value: "0:{n}:1"}}}}
  {rules}
component:
  inputs: [{{name: i, type: int}}]
  run: {{kind: job, container: {{command: [train, "{{{{ i }}}}"]}}}}
"""
METRIC_RULE = (
    "earlyStopping: [{kind: metric_early_stopping, metric: loss, value: -1, "
    "optimization: minimize}]"
)


def grid(write: Callable[..., Path], n: int, rules: str = "") -> Path:
    return write(GRID.format(n=n, rules=rules))


def ok(job: Any) -> FakeRun:
    return FakeRun(lines=[f'{{"metrics": {{"loss": {job.index}}}, "step": 1}}'])


def sweep(
    spec: Path,
    home: Path,
    plugins: list[tuple[str, object]],
    handler: Callable[[Any], FakeRun] = ok,
    keep_finished: int = 1000,
) -> tuple[SweepController, SweepResult, Journal]:
    """Run ``spec`` with a fake executor; the journal is left open (the caller closes it)."""
    host = PluginHost()
    for name, plugin in plugins:
        assert host.register(plugin, name)
    journal = Journal(home / "journal.sqlite")
    settings = SweepSettings(
        home=home, spec_path=str(spec), concurrency=4, grace=1.0, keep_finished=keep_finished
    )
    controller = build_sweep(
        compile_plan(load_spec(spec), paths=run_paths(home)),
        settings,
        journal=journal,
        plugins=host,
        executor=FakeExecutor(handler),
    )
    result = anyio.run(controller.run)
    return controller, result, journal


def subscribed(controller: SweepController) -> list[frozenset[type]]:
    return [sub.types for sub in controller.bus._subs]


# ---------------------------------------------------------------- who hears what
def test_no_early_stopping_observer_is_subscribed_when_the_spec_has_no_rules(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    plugins = [("early_stopping", early_stopping.EarlyStopping())]
    controller, result, journal = sweep(grid(write, 3), tmp_path, plugins)
    journal.close()
    assert result.state is SweepState.SUCCEEDED
    assert subscribed(controller) == []


def test_early_stopping_with_a_metric_rule_hears_metrics_only(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    plugins = [("early_stopping", early_stopping.EarlyStopping())]
    controller, _, journal = sweep(grid(write, 3, METRIC_RULE), tmp_path, plugins)
    journal.close()
    assert subscribed(controller) == [frozenset({MetricReported})]


def test_the_cache_hears_only_the_sweeps_end(write: Callable[..., Path], tmp_path: Path) -> None:
    plugins = [("cache", cache_plugin.RunCache())]
    controller, result, journal = sweep(grid(write, 3), tmp_path, plugins)
    journal.close()
    assert result.state is SweepState.SUCCEEDED
    assert subscribed(controller) == [frozenset({SweepFinished})]


class Picky:
    """Implements two observer hooks; ``observes`` says which it wants in this sweep."""

    def __init__(self, wanted: list[str] | Exception | None) -> None:
        self.wanted = wanted
        self.heard: list[str] = []

    @hookimpl
    async def observes(self, ctx: Any) -> list[str] | None:
        if isinstance(self.wanted, Exception):
            raise self.wanted
        return self.wanted

    @hookimpl
    async def on_run_created(self, event: RunCreated) -> None:
        self.heard.append("created")

    @hookimpl
    async def on_metric(self, event: MetricReported) -> None:
        self.heard.append("metric")


@pytest.mark.parametrize(
    ("wanted", "heard"),
    [
        (None, {"created", "metric"}),
        (["on_metric"], {"metric"}),
        ([], set()),
    ],
)
def test_observes_narrows_a_plugins_events_for_the_sweep(
    write: Callable[..., Path],
    tmp_path: Path,
    wanted: list[str] | None,
    heard: set[str],
) -> None:
    picky = Picky(wanted)
    result, _ = run_fake_sweep(grid(write, 2), ok, plugins=[picky])
    assert result.state is SweepState.SUCCEEDED
    assert set(picky.heard) == heard
    assert len(picky.heard) == 2 * len(heard)


def test_an_observes_that_raises_switches_the_plugin_off(
    write: Callable[..., Path],
) -> None:
    said: list[str] = []
    picky = Picky(RuntimeError("no idea"))
    result, _ = run_fake_sweep(grid(write, 2), ok, plugins=[picky], report=said.append)
    assert result.state is SweepState.SUCCEEDED
    assert picky.heard == []
    assert said == [
        "plugin 'Picky': observes raised RuntimeError: no idea; switched off for this sweep"
    ]


class Slow:
    """An observer whose events pile up while it is busy: it gets them as batches."""

    def __init__(self) -> None:
        self.order: list[int] = []

    @hookimpl
    async def on_run_created(self, event: RunCreated) -> None:
        self.order.append(event.index)
        await anyio.lowlevel.checkpoint()


def test_observers_get_every_event_in_order_when_they_come_in_batches(
    write: Callable[..., Path],
) -> None:
    slow = Slow()
    result, _ = run_fake_sweep(grid(write, 50), ok, plugins=[slow], concurrency=8)
    assert result.state is SweepState.SUCCEEDED
    assert slow.order == list(range(50))


class Finished:
    def __init__(self) -> None:
        self.ended: list[tuple[int, RunState]] = []

    @hookimpl
    async def on_run_finished(self, run: Any) -> None:
        self.ended.append((run.index, run.state))


def test_on_run_finished_hears_runs_stopped_before_they_started(
    write: Callable[..., Path],
) -> None:
    class StopAtTheSecond:
        """Stops the sweep while the second run waits (``Defer``): it ends before it starts."""

        @hookimpl
        async def decide_before_run(self, run: Any, ctx: Any) -> Defer | None:
            if run.index != 1:
                return None
            ctx.stop_sweep("enough")
            ready = anyio.Event()
            ready.set()
            return Defer(ready)

    finished = Finished()
    result, _ = run_fake_sweep(
        grid(write, 2), ok, plugins=[finished, StopAtTheSecond()], concurrency=1
    )
    assert result.state is SweepState.STOPPED
    assert (1, RunState.STOPPED) in finished.ended
    assert sorted(i for i, _ in finished.ended) == [r.index for r in result.runs]


# ---------------------------------------------------------------- the reporter
async def _show(reporter: Reporter, events: list[Any]) -> None:
    bus = EventBus("s" * 32)
    subscription = reporter.subscribe(bus)
    for event in events:
        await bus.publish(event)
    await subscription.send.aclose()
    await reporter.consume(subscription.receive)


def test_a_quiet_reporter_hears_only_failures_and_stops() -> None:
    out = io.StringIO()
    reporter = Reporter(out, live=False, keys=None, quiet=True)
    bus = EventBus("s" * 32)

    def changed(index: int, state: RunState, reason: str | None = None) -> RunStateChanged:
        return bus.stamp(
            RunStateChanged,
            run_id=f"r{index}",
            index=index,
            previous=RunState.RUNNING,
            state=state,
            reason=reason,
            exit_code=None,
            stderr_tail=["boom"] if state is RunState.FAILED else None,
            outputs=None,
        )

    events = [
        changed(0, RunState.RUNNING),
        changed(0, RunState.SUCCEEDED),
        changed(1, RunState.FAILED, "exit code 3"),
        bus.stamp(SweepStopping, reason="enough", final_state=SweepState.STOPPED),
    ]
    anyio.run(_show, reporter, events)
    assert out.getvalue().splitlines() == [
        "#1    failed    (exit code 3)",
        "      | boom",
        "stopping the sweep (stopped): enough",
    ]
    assert reporter.states == {} and reporter.done == {RunState.FAILED: 1}


# ---------------------------------------------------------------- flat memory
def live_records(sweep_id: str, journal: Journal) -> list[RunRecord]:
    """The RunRecord objects of that sweep's runs still in memory."""
    ids = {row.id for row in journal.runs_of(sweep_id)}
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, RunRecord) and o.id in ids]


def test_finished_runs_leave_memory_and_the_result_is_read_from_the_journal(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    def handler(job: Any) -> FakeRun:
        return FakeRun(exit_code=3 if job.index == 4 else 0)

    spec = grid(write, 30)
    plugins = [("cache", cache_plugin.RunCache()), ("early_stopping", early_stopping.plugin)]
    controller, result, journal = sweep(spec, tmp_path, plugins, handler, keep_finished=10)
    try:
        assert live_records(result.sweep_id, journal) == [], "no RunRecord of a finished run"
        assert controller.runs == [] and controller.active == {} and controller.by_id == {}
        assert result.state is SweepState.FAILED
        assert result.reason == "1 of 30 runs failed"
        assert len(result.runs) == 30
        runs = list(result.runs)
        assert [r.index for r in runs] == list(range(30))
        assert [r.state for r in runs].count(RunState.SUCCEEDED) == 29
        assert runs[4].state is RunState.FAILED and runs[4].exit_code == 3
        assert result.runs[4].id == runs[4].id and result.runs[-1].index == 29
        assert controller.ctx.counts() == {"succeeded": 29, "failed": 1}
        view = controller.ctx.run(runs[7].id)
        assert view is not None and view.state is RunState.SUCCEEDED and view.index == 7
        shown = json.loads(summary_json(result.sweep_id, result.state.value, result.runs))
        assert [r["index"] for r in shown["runs"]] == list(range(30))
        assert "failed" in summary_table(result.runs, total=30)
    finally:
        journal.close()


def test_a_small_sweep_keeps_its_records(write: Callable[..., Path], tmp_path: Path) -> None:
    controller, result, journal = sweep(grid(write, 5), tmp_path, [])
    journal.close()
    assert isinstance(result.runs, list) and len(result.runs) == 5
    assert [r.state for r in result.runs] == [RunState.SUCCEEDED] * 5
    assert controller.active == {}


def test_the_feed_waits_for_a_journal_that_falls_behind(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")

    async def main() -> int:
        for i in range(200):  # metrics of an unknown run: records the writer must try
            journal.add_metrics(f"r{i}", 1, {"loss": 1.0})
        await journal.keep_up(limit=10)
        return journal._queue.qsize()

    try:
        assert anyio.run(main) == 0, "keep_up returned only once the writer caught up"
    finally:
        journal.close()
