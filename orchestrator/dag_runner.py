"""Wire a pipeline together for the command line: its nodes' services, signals, and what it
prints (a line per node as it starts and ends, then the DAG → node → runs tree)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

import anyio
import msgspec

from orchestrator import runner
from orchestrator.engine.build import build_dag
from orchestrator.engine.bus import EventBus
from orchestrator.engine.records import SweepResult
from orchestrator.engine.recovery import open_journal
from orchestrator.engine.states import SweepState
from orchestrator.heap import settle_if_owned
from orchestrator.output_guard import GuardedOutput
from orchestrator.reporting import dag_tree, resume_hint
from orchestrator.store.journal import Journal
from orchestrator.store.layout import ensure_home, journal_path, run_paths
from orchestrator.wording import plural

if TYPE_CHECKING:
    from orchestrator.engine.dag import DagController
    from orchestrator.eventlog import EventLog
    from orchestrator.history import DagResumePlan
    from orchestrator.spec import LoadedSpec
    from orchestrator.spec.dag import DagPlan

__all__ = ["execute_dag", "run_dag"]


def run_dag(
    loaded: LoadedSpec,
    overrides: dict[str, str],
    options: runner.RunOptions,
    *,
    resume_latest: bool = False,
) -> int:
    """Run a new pipeline (or, with ``resume_latest``, continue the newest one of this spec).
    Compiled first (``compile_dag``): a pipeline that cannot run creates nothing."""
    from orchestrator.spec.dag import compile_dag

    plan = compile_dag(loaded, overrides, paths=run_paths(options.home))
    ensure_home(options.home)
    journal = open_journal(journal_path(options.home), options.err)
    try:
        if resume_latest:
            newest = journal.latest_sweep_of_spec(runner.spec_path_of(loaded.source))
            if newest is not None:
                return runner.resume_in(
                    journal, newest, options, overrides=overrides, loaded=loaded
                )
        return execute_dag(journal, plan, loaded, overrides, options, None)
    finally:
        journal.close()


def execute_dag(
    journal: Journal,
    plan: DagPlan,
    loaded: LoadedSpec,
    overrides: dict[str, str],
    options: runner.RunOptions,
    resume: DagResumePlan | None,
) -> int:
    """Run the pipeline to its end and print how it went; the exit status: 0 when it
    succeeded."""
    outputs = runner.guard_outputs(options)
    event_log = runner.open_event_log(options.log_json, options.err)
    try:
        controller = _build(journal, plan, loaded, overrides, options, resume)
        runner.fast_child_watcher()
        settle_if_owned()  # what the pipeline is set up with lives as long as it does
        result = anyio.run(_main, controller, options.err, options.grace, event_log, outputs)
    finally:
        if event_log is not None:
            event_log.close()
    _print_result(journal, result, options)
    for hint in resume_hint(result.sweep_id, result.state.value, runner.home_arg(options.home)):
        options.err.write(hint + "\n")
    if result.journal_error is not None:
        options.err.write(f"orchestrator: journal write failed: {result.journal_error}\n")
        return runner.EXIT_FAILED
    return runner.EXIT_OK if result.state is SweepState.SUCCEEDED else runner.EXIT_FAILED


def _build(
    journal: Journal,
    plan: DagPlan,
    loaded: LoadedSpec,
    overrides: dict[str, str],
    options: runner.RunOptions,
    resume: DagResumePlan | None,
) -> DagController:
    """The pipeline's controller, with the installed plugins; says on stderr what will run."""
    err = options.err
    plugins = runner.configured_plugins(loaded, options)
    limit, source = runner.concurrency_of(plan.concurrency, options.concurrency, "dag")
    settings = runner.announced_settings(loaded, overrides, options, limit, plan.warnings)
    # On a Dask cluster: an executor per node for what its runs ask, and one that opens the
    # cluster around the pipeline and runs its hooks.
    pool, cluster = runner.where_runs_go(options)
    controller = build_dag(
        plan,
        settings,
        journal=journal,
        plugins=plugins,
        executor=cluster.executor() if cluster is not None else None,
        executor_for=cluster.executor if cluster is not None else None,
        resume=resume.resume if resume is not None else None,
        resources=pool,
        cache=options.cache,
        err=err,
    )
    what = "pipeline"
    if resume is not None:
        kept = sum(1 for name in controller.states if name in plan.nodes)
        what = f"resuming pipeline ({plural(kept, 'node')} kept)"
    err.write(
        f"{what} {controller.sweep_id[:12]} ({loaded.source}): "
        f"{plural(len(plan.nodes), 'node')}, concurrency {limit} ({source}); "
        f"journal {journal.path}\n"
    )
    err.flush()
    return controller


async def _main(
    controller: DagController,
    err: IO[str],
    grace: float,
    event_log: EventLog | None,
    outputs: Sequence[GuardedOutput] = (),
) -> SweepResult:
    from orchestrator.engine.events import EVENT_TYPES

    async with anyio.create_task_group() as logs:
        if event_log is not None:
            log = event_log

            def record(bus: EventBus, tg: anyio.abc.TaskGroup) -> None:
                tg.start_soon(log.record, bus.subscribe(EVENT_TYPES, buffer=10_000).receive)

            record(controller.bus, logs)  # the pipeline's own events, then each node's
            controller.node_observers.append(record)
        async with anyio.create_task_group() as tg:
            await tg.start(runner.watch_signals, controller, err, grace, outputs)
            try:
                async with runner.opened(controller.executor):
                    result = await controller.run()
            finally:
                with anyio.CancelScope(shield=True):
                    await controller.bus.close()
                tg.cancel_scope.cancel()
    return result


def _print_result(journal: Journal, result: SweepResult, options: runner.RunOptions) -> None:
    from orchestrator.history import sweep_detail

    out = options.out
    body = sweep_detail(journal, result.sweep_id)
    if options.as_json:
        out.write(msgspec.json.encode(body).decode() + "\n")
    else:
        out.write(dag_tree(body) + "\n")
        reason = f" ({result.reason})" if result.reason else ""
        out.write(f"\ndag {result.sweep_id[:12]} {result.state.value}{reason}\n")
    out.flush()
