"""Helpers for plugin authors' tests: a scripted executor and an event recorder.

``FakeExecutor`` runs no processes: a handler says, per job, which lines each run prints (metric
lines included) and how it exits, so a plugin's reaction to a sweep can be tested in
milliseconds and deterministically. ``capture_events`` records every event a sweep publishes.

    from orchestrator.testing import FakeExecutor, FakeRun, capture_events, run_fake_sweep

    def handler(job):
        return FakeRun(lines=['{"metrics": {"loss": 0.1}}'], exit_code=0)

    result, events = run_fake_sweep("spec.yaml", handler, plugins=[my_plugin])
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from orchestrator.engine.build import SweepSettings, build_sweep
from orchestrator.engine.bus import EventBus
from orchestrator.engine.events import EVENT_TYPES, Event
from orchestrator.engine.plugin_host import PluginHost
from orchestrator.engine.records import SweepResult
from orchestrator.executors.base import Job, Outcome, OutputSink, StopRequest
from orchestrator.spec import compile_plan, load_spec
from orchestrator.store.journal import Journal
from orchestrator.store.layout import run_paths

__all__ = ["FakeExecutor", "FakeRun", "capture_events", "run_fake_sweep"]

#: Jobs a :class:`FakeExecutor` remembers (the latest).
KEPT_JOBS = 1000


@dataclass
class FakeRun:
    """What one fake run does: print ``lines`` (stdout) and ``stderr``, then exit."""

    lines: Sequence[str] = ()
    stderr: Sequence[str] = ()
    exit_code: int = 0
    #: Never exit by itself: it ends only when stopped (to test stopping plugins).
    hang: bool = False
    #: Could not start, with this reason (a missing command, say).
    error: str | None = None


class FakeExecutor:
    """An :class:`~orchestrator.executors.base.Executor` that runs no processes."""

    def __init__(self, handler: Callable[[Job], FakeRun]) -> None:
        self.handler = handler
        #: The latest jobs it was given (a bounded number: a million-run test stays small).
        self.jobs: deque[Job] = deque(maxlen=KEPT_JOBS)

    async def execute(
        self,
        job: Job,
        sink: OutputSink,
        stop: StopRequest,
        started: Callable[[int | None], Awaitable[None]],
    ) -> Outcome:
        self.jobs.append(job)
        script = self.handler(job)
        if script.error is not None:
            return Outcome(None, error=script.error)
        await started(None)
        for line in script.lines:
            await sink.line("stdout", line)
            if stop.is_requested:
                return Outcome(-15, stopped=True)
        for line in script.stderr:
            await sink.line("stderr", line)
        if script.hang:
            await stop.requested.wait()
            return Outcome(-15, stopped=True)
        return Outcome(script.exit_code, stopped=stop.is_requested)


@contextlib.asynccontextmanager
async def capture_events(
    bus: EventBus,
    types: Iterable[type] = EVENT_TYPES,
) -> AsyncIterator[list[Event]]:
    """Record every event of ``types`` published on ``bus`` while the block runs."""
    events: list[Event] = []
    subscription = bus.subscribe(types, buffer=100_000)

    async def drain() -> None:
        async with subscription.receive:
            async for event in subscription.receive:
                events.append(event)

    async with anyio.create_task_group() as tg:
        tg.start_soon(drain)
        yield events
        await subscription.send.aclose()


def run_fake_sweep(
    spec: str | Path,
    handler: Callable[[Job], FakeRun],
    *,
    plugins: Sequence[object] = (),
    home: Path | None = None,
    concurrency: int = 4,
    strict: bool = False,
    report: Callable[[str], None] | None = None,
    timeout: float = 30.0,
) -> tuple[SweepResult, list[Event]]:
    """Run ``spec`` with a :class:`FakeExecutor` and the given plugin objects (not the
    installed ones); return the result and every event, in order."""

    async def main(home_dir: Path) -> tuple[SweepResult, list[Event]]:
        host = PluginHost(strict=strict, report=report, timeout=timeout)
        for plugin in plugins:
            host.register(plugin, getattr(plugin, "__name__", type(plugin).__name__))
        journal = Journal(home_dir / "journal.sqlite")
        try:
            settings = SweepSettings(
                home=home_dir, spec_path=str(spec), concurrency=concurrency, grace=1.0
            )
            controller = build_sweep(
                compile_plan(load_spec(spec), paths=run_paths(home_dir)),
                settings,
                journal=journal,
                plugins=host,
                executor=FakeExecutor(handler),
            )
            async with capture_events(controller.bus) as events:
                result = await controller.run()
            return result, events
        finally:
            journal.close()

    if home is not None:
        return anyio.run(main, home)
    with tempfile.TemporaryDirectory() as tmp:
        return anyio.run(main, Path(tmp))
