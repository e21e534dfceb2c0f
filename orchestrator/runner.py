"""Wire a sweep together for the command line: journal, bus, executor, reporter, signals."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path
from typing import IO

import anyio

from orchestrator.engine.bus import EventBus
from orchestrator.engine.states import SweepState
from orchestrator.engine.sweep import SweepController, SweepResult
from orchestrator.executors.local import LocalExecutor
from orchestrator.reporting import Reporter, summary_json, summary_table
from orchestrator.spec import LoadedSpec, compile_plan
from orchestrator.store.journal import Journal
from orchestrator.store.layout import journal_path

__all__ = ["run_sweep"]

EXIT_OK, EXIT_FAILED = 0, 1


def _concurrency(plan_concurrency: int | None, given: int | None) -> tuple[int, str]:
    if given is not None:
        return given, "--concurrency"
    if plan_concurrency is not None:
        return plan_concurrency, "matrix.concurrency"
    return os.cpu_count() or 1, "number of CPUs"


async def _watch_signals(
    controller: SweepController,
    err: IO[str],
    grace: float,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        count = 0
        async for signum in signals:
            count += 1
            name = signal.Signals(signum).name
            if count == 1:
                err.write(
                    f"\n{name}: stopping the sweep; running runs get SIGTERM, then SIGKILL "
                    f"after {grace:g}s (press Ctrl-C again to kill now)\n"
                )
                controller.request_stop(f"interrupted ({name})")
            else:
                err.write(f"{name}: killing running runs now\n")
                controller.request_stop(f"interrupted ({name})", grace=0)
            err.flush()


async def _main(
    controller: SweepController, reporter: Reporter, err: IO[str], grace: float
) -> SweepResult:
    subscription = controller.bus.subscribe(Reporter.TYPES)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reporter.consume, subscription.receive)
        tg.start_soon(reporter.tick)
        await tg.start(_watch_signals, controller, err, grace)
        result = await controller.run()
        await controller.bus.close()
        reporter.live = False
        tg.cancel_scope.cancel()
    return result


def _fast_child_watcher() -> None:
    """On Python 3.11, asyncio waits for each child in a thread of its own; a pidfd watcher
    (Linux >= 5.3) waits in the event loop instead, which is what 3.12 does by default."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    import asyncio
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:
            return
        asyncio.get_event_loop_policy().set_child_watcher(asyncio.PidfdChildWatcher())


def run_sweep(
    loaded: LoadedSpec,
    overrides: dict[str, str],
    *,
    home: Path,
    out: IO[str],
    err: IO[str],
    concurrency: int | None,
    grace: float,
    as_json: bool,
    name: str | None,
    description: str | None,
    tags: list[str],
) -> int:
    plan = compile_plan(loaded, overrides, home=home, name=name)
    limit, source = _concurrency(plan.concurrency, concurrency)
    for note in loaded.ignored:
        err.write(f"note: {note}: no local meaning, ignored\n")
    journal = Journal(journal_path(home))
    try:
        sweep_id = uuid.uuid4().hex
        bus = EventBus(sweep_id)
        controller = SweepController(
            plan,
            journal=journal,
            executor=LocalExecutor(home),
            bus=bus,
            concurrency=limit,
            grace=grace,
            home=home,
            spec_path=loaded.source,
            name=name,
            description=description,
            tags=tags,
        )
        keys = plan.expansion.keys if plan.expansion is not None else None
        live = err.isatty() and not as_json
        reporter = Reporter(err, live=live, keys=keys)
        err.write(
            f"sweep {sweep_id[:12]} ({loaded.source}): {len(plan)} runs, "
            f"concurrency {limit} ({source}); journal {journal.path}\n"
        )
        err.flush()
        _fast_child_watcher()
        result = anyio.run(_main, controller, reporter, err, grace)
    finally:
        journal.close()
    if as_json:
        out.write(summary_json(result.sweep_id, result.state.value, result.runs) + "\n")
    else:
        out.write(summary_table(result.runs, keys) + "\n")
        reason = f" ({result.reason})" if result.reason else ""
        out.write(f"\nsweep {result.sweep_id[:12]} {result.state.value}{reason}\n")
    out.flush()
    return EXIT_OK if result.state is SweepState.SUCCEEDED else EXIT_FAILED
