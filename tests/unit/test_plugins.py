"""The hook API: order, arguments, decisions, and plugins that raise, hang or lie."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.engine.events import MetricReported, RunStateChanged
from orchestrator.engine.plugin_host import PluginHost
from orchestrator.engine.states import RunState, SweepState
from orchestrator.exceptions import PluginError
from orchestrator.hooks import Skip, UseCached, hookimpl
from orchestrator.store.journal import Journal
from orchestrator.testing import FakeRun, run_fake_sweep

SPEC = """
version: 1.1
kind: operation
matrix: {kind: mapping, values: [{i: 0}, {i: 1}, {i: 2}]}
component:
  inputs: [{name: i, type: int}]
  run: {kind: job, container: {command: [train, "{{ i }}"]}}
"""


@pytest.fixture
def spec(write: Callable[..., Path]) -> Path:
    return write(SPEC)


def ok(job: Any) -> FakeRun:
    return FakeRun(lines=[f'{{"metrics": {{"loss": {job.index}}}, "step": 1}}'])


class Recorder:
    def __init__(self) -> None:
        self.states: list[tuple[int, str]] = []
        self.metrics: list[float] = []
        #: (event index, index of the run ``ctx.run`` finds for the event's run id)
        self.looked_up: list[tuple[int, int | None]] = []

    @hookimpl
    def on_run_state_changed(self, event: RunStateChanged) -> None:
        self.states.append((event.index, event.state))

    @hookimpl
    async def on_metric(self, event: MetricReported, ctx: Any) -> None:
        self.metrics.append(event.values["loss"])
        view = ctx.run(event.run_id)
        self.looked_up.append((event.index, None if view is None else view.index))


def test_observers_get_their_events_in_order_with_only_the_arguments_they_name(
    spec: Path,
) -> None:
    recorder = Recorder()
    messages: list[str] = []
    result, _ = run_fake_sweep(spec, ok, plugins=[recorder], concurrency=1, report=messages.append)
    assert messages == []
    assert result.state is SweepState.SUCCEEDED
    assert [s for i, s in recorder.states if i == 0] == [
        "queued",
        "starting",
        "running",
        "succeeded",
    ]
    assert recorder.metrics == [0.0, 1.0, 2.0]
    assert recorder.looked_up == [(0, 0), (1, 1), (2, 2)]


def test_decisions_first_answer_wins_in_pluggy_order(spec: Path) -> None:
    class Skipper:
        @hookimpl
        def decide_before_run(self, run: Any) -> Skip | None:
            return Skip("not today") if run.index == 1 else None

    class Cacher:
        @hookimpl
        def decide_before_run(self, run: Any) -> UseCached | None:
            return UseCached("r-old", {"loss": 9.0}) if run.index in (1, 2) else None

    # pluggy calls the last registered first: Cacher answers for 1 and 2.
    result, _ = run_fake_sweep(spec, ok, plugins=[Skipper(), Cacher()])
    assert [(r.state, r.reason) for r in result.runs] == [
        (RunState.SUCCEEDED, None),
        (RunState.SUCCEEDED, "cache_hit"),
        (RunState.SUCCEEDED, "cache_hit"),
    ]
    assert result.runs[1].outputs == {"loss": 9.0}
    result, _ = run_fake_sweep(spec, ok, plugins=[Cacher(), Skipper()])
    assert result.runs[1].state is RunState.SKIPPED
    assert result.runs[1].reason == "not today"


def test_a_plugin_that_raises_is_named_switched_off_and_the_sweep_goes_on(spec: Path) -> None:
    class Broken:
        calls = 0

        @hookimpl
        def on_run_state_changed(self, event: Any) -> None:
            Broken.calls += 1
            raise RuntimeError("boom")

    messages: list[str] = []
    result, _ = run_fake_sweep(spec, ok, plugins=[Broken()], report=messages.append)
    assert result.state is SweepState.SUCCEEDED
    assert messages == [
        "plugin 'Broken': on_run_state_changed raised RuntimeError: boom; "
        "switched off for this sweep"
    ]
    assert Broken.calls == 1


def test_a_plugin_that_hangs_is_named_and_switched_off(spec: Path) -> None:
    class Slow:
        @hookimpl
        async def decide_before_run(self, run: Any) -> None:
            await anyio.sleep(60)

    class SlowSync:
        @hookimpl
        def on_run_created(self, event: Any) -> None:
            time.sleep(1.5)

    messages: list[str] = []
    started = time.monotonic()
    result, _ = run_fake_sweep(
        spec, ok, plugins=[Slow(), SlowSync()], report=messages.append, timeout=0.3
    )
    assert time.monotonic() - started < 10
    assert result.state is SweepState.SUCCEEDED
    assert sorted(messages) == [
        "plugin 'Slow': decide_before_run did not return within 0.3s; switched off for this sweep",
        "plugin 'SlowSync': on_run_created did not return within 0.3s; switched off for this sweep",
    ]


def test_strict_plugins_stop_the_sweep(spec: Path) -> None:
    class Broken:
        @hookimpl
        def on_run_created(self, event: Any) -> None:
            raise ValueError("bad")

    messages: list[str] = []
    result, _ = run_fake_sweep(
        spec, ok, plugins=[Broken()], strict=True, report=messages.append, concurrency=1
    )
    assert result.state is SweepState.FAILED
    assert "plugin 'Broken': on_run_created raised ValueError: bad" in (result.reason or "")
    assert messages[0].endswith("stopping the sweep (--strict-plugins)")


def test_wrong_declarations_are_refused_with_the_plugin_name() -> None:
    class WrongArgs:
        @hookimpl
        def on_metric(self, event: Any, nonsense: Any) -> None: ...

    class NoSuchHook:
        @hookimpl
        def on_coffee(self, event: Any) -> None: ...

    class Wrapper:
        @hookimpl(wrapper=True)
        def decide_before_run(self, run: Any) -> Any:
            return (yield)

    class Future:
        ORCHESTRATOR_PLUGIN_API = 99

    messages: list[str] = []
    host = PluginHost(report=messages.append)
    for plugin in (WrongArgs(), NoSuchHook(), Wrapper(), Future()):
        assert host.register(plugin, type(plugin).__name__) is False
    assert [m.split(":")[0] for m in messages] == [
        "plugin 'WrongArgs'",
        "plugin 'NoSuchHook'",
        "plugin 'Wrapper'",
        "plugin 'Future'",
    ]
    assert "declares a hook wrongly" in messages[0] and "nonsense" in messages[0]
    assert "does not exist" in messages[1]
    assert "wrappers are not supported" in messages[2]
    assert "plugin API 99" in messages[3]
    assert host.loaded == {}
    with pytest.raises(PluginError, match="WrongArgs"):
        PluginHost(strict=True).register(WrongArgs(), "WrongArgs")


def test_ctx_can_stop_the_sweep_and_a_run(spec: Path) -> None:
    class Stopper:
        @hookimpl
        def on_metric(self, event: MetricReported, ctx: Any) -> None:
            if event.index == 0:
                assert ctx.stop_run(event.run_id, "stop that one")
                ctx.stop_sweep("enough", final_state="succeeded")

    def hanging(job: Any) -> FakeRun:
        return FakeRun(lines=['{"metrics": {"loss": 1}}'], hang=True)

    result, _ = run_fake_sweep(spec, hanging, plugins=[Stopper()], concurrency=1)
    assert result.state is SweepState.SUCCEEDED
    assert result.reason == "enough"
    assert [(r.index, r.state, r.reason) for r in result.runs] == [
        (0, RunState.STOPPED, "stop that one")
    ]


def test_a_plugin_reads_where_the_sweep_runs_as_the_journal_keeps_it(
    spec: Path, tmp_path: Path
) -> None:
    seen: list[dict[str, Any] | None] = []

    class Provenance:
        @hookimpl
        async def on_sweep_started(self, ctx: Any) -> None:
            seen.append(await ctx.provenance())

    home = tmp_path / "home"
    run_fake_sweep(spec, ok, plugins=[Provenance()], home=home)
    [record] = seen
    assert record is not None
    assert record["python"] == sys.executable
    assert record["host"] == socket.gethostname()
    assert record["packages_hash"] and "msgspec==" in record["packages"]
    journal = Journal(home / "journal.sqlite")
    try:
        assert journal.provenance_at(journal.find_sweep("last").id, None) == record
    finally:
        journal.close()
