"""Wire a sweep together for the command line: journal, bus, executor, reporter, signals."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import anyio
import msgspec

from orchestrator.engine.build import SweepSettings, build_sweep
from orchestrator.engine.events import EVENT_TYPES
from orchestrator.engine.op_hooks import hooks_after_sweep
from orchestrator.engine.plugin_host import PluginHost
from orchestrator.engine.records import Resume, SweepResult
from orchestrator.engine.recovery import open_journal
from orchestrator.engine.states import SWEEP_TERMINAL, SweepState
from orchestrator.engine.sweep import SweepController
from orchestrator.exceptions import StoreError
from orchestrator.executors.base import Executor
from orchestrator.heap import settle_if_owned
from orchestrator.history import prepare_resume
from orchestrator.output_guard import GuardedOutput
from orchestrator.reporting import (
    Reporter,
    objective_of,
    resume_hint,
    show_hint,
    write_final_table,
    write_summary_json,
)
from orchestrator.spec import LoadedSpec, Plan, compile_plan
from orchestrator.spec import models as m
from orchestrator.store.journal import Journal
from orchestrator.store.layout import ensure_home, existing_journal, journal_path, run_paths
from orchestrator.wording import plural, write_warnings

if TYPE_CHECKING:
    from orchestrator.engine.dag import DagController
    from orchestrator.engine.resources import ResourcePool
    from orchestrator.eventlog import EventLog
    from orchestrator.executors.dask_executor import DaskCluster

    #: What Ctrl-C and SIGTERM stop: a sweep, or a pipeline (and its running nodes).
    Stoppable = SweepController | DagController

__all__ = ["RunOptions", "resume_sweep", "run_sweep"]

EXIT_OK, EXIT_FAILED = 0, 1


def concurrency_of(
    plan_concurrency: int | None, given: int | None, section: str = "matrix"
) -> tuple[int, str]:
    if given is not None:
        return given, "--concurrency"
    if plan_concurrency is not None:
        return plan_concurrency, f"{section}.concurrency"
    return os.cpu_count() or 1, "number of CPUs"


def guard_outputs(options: RunOptions) -> list[GuardedOutput]:
    """Wrap ``options``' stdout and stderr so that a reader going away (a closed pipe or
    terminal) drops their output instead of raising; :func:`watch_signals` then stops the
    sweep."""
    outputs = [GuardedOutput(options.out), GuardedOutput(options.err)]
    options.out, options.err = outputs[0].as_io(), outputs[1].as_io()
    return outputs


async def watch_signals(
    controller: Stoppable,
    err: IO[str],
    grace: float,
    outputs: Sequence[GuardedOutput] = (),
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """SIGINT, SIGTERM, SIGHUP (the terminal closed) and an output whose reader is gone stop
    the sweep: no new runs, running ones get SIGTERM, then SIGKILL after ``grace``; a
    second signal kills them at once."""

    def output_gone() -> None:
        if controller.state not in SWEEP_TERMINAL:
            controller.request_stop("interrupted (output closed)")

    async with anyio.create_task_group() as readers:
        for output in outputs:
            output.on_gone(output_gone)
            readers.start_soon(output.watch_reader)
        await _stop_on_signals(controller, err, grace, task_status)


async def _stop_on_signals(
    controller: Stoppable, err: IO[str], grace: float, task_status: anyio.abc.TaskStatus[None]
) -> None:
    watched = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # under nohup it stays ignored
        watched.append(signal.SIGHUP)
    with anyio.open_signal_receiver(*watched) as signals:
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
    controller: SweepController,
    reporter: Reporter,
    err: IO[str],
    grace: float,
    event_log: EventLog | None,
    outputs: Sequence[GuardedOutput] = (),
) -> SweepResult:
    subscription = reporter.subscribe(controller.bus)
    # The event log drains to its last event (the sweep's end) after the bus closes.
    async with anyio.create_task_group() as logs:
        if event_log is not None:
            recorded = controller.bus.subscribe(EVENT_TYPES, buffer=10_000)
            logs.start_soon(event_log.record, recorded.receive)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(reporter.consume, subscription.receive)
                if reporter.live:
                    tg.start_soon(reporter.tick)
                await tg.start(watch_signals, controller, err, grace, outputs)
                try:
                    async with opened(controller.executor):
                        result = await controller.run()
                        await hooks_after_sweep(controller, result, err)
                finally:
                    with anyio.CancelScope(shield=True):
                        await controller.bus.close()
                    reporter.live = False
                    tg.cancel_scope.cancel()
        finally:
            reporter.close()  # the last status line stays; what follows goes below it
    return result


def opened(executor: Executor) -> contextlib.AbstractAsyncContextManager[object]:
    """An executor that holds a connection (Dask) is opened around the sweep."""
    if isinstance(executor, contextlib.AbstractAsyncContextManager):
        return executor
    return contextlib.nullcontext()


def open_event_log(target: str | None, err: IO[str]) -> EventLog | None:
    """``--log-json FILE`` (``-``: stderr), opened before anything runs, or None."""
    if target is None:
        return None
    from orchestrator.eventlog import EventLog

    try:
        return EventLog(target, err)
    except OSError as exc:
        raise StoreError(f"--log-json: cannot open {target}: {exc.strerror}") from None


def _runs_note(controller: SweepController) -> str:
    """How many runs the sweep makes: ``6 runs``; an adaptive search's ``up to``/``some``."""
    if not controller.adaptive:
        return plural(controller.total, "run")
    expansion = controller.plan.expansion
    kind = expansion.kind if expansion is not None else "adaptive"
    if controller.total:
        return f"{kind} search, {plural(controller.total, 'run')}"
    return f"{kind} search, runs decided as it goes"


def _seed_note(plan: Plan) -> str:
    """``, seed N`` for a random search, so a user can pin it (``matrix.seed``)."""
    seed = plan.expansion.seed if plan.expansion is not None else None
    return f", seed {seed}" if seed is not None else ""


def fast_child_watcher() -> None:
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


@dataclass
class RunOptions:
    """What the command line says about how to run (shared by run, resume and rerun)."""

    home: Path
    out: IO[str]
    err: IO[str]
    concurrency: int | None = None
    grace: float = 10.0
    as_json: bool = False
    name: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    #: ``--plugin`` (only these) and ``--no-plugin`` (not these); ``--strict-plugins``.
    allow_plugins: list[str] | None = None
    deny_plugins: list[str] = field(default_factory=list)
    strict_plugins: bool = False
    #: ``--cache BOOL`` / ``--nocache``: None leaves the spec's ``cache`` section alone.
    cache: bool | None = None
    #: ``--max-time``: seconds the whole sweep may take before it is stopped.
    max_time: float | None = None
    #: ``--log-json FILE``: every sweep event as one JSON record per line (``-``: stderr).
    log_json: str | None = None
    #: ``--gpus``, ``--cpus``, ``--memory``: what runs may be given (None: the machine's).
    gpus: str | None = None
    cpus: str | None = None
    memory: str | None = None
    #: ``--executor dask --scheduler ADDRESS``: runs go to this Dask scheduler's workers.
    scheduler: str | None = None


def machine_pool(
    gpus: str | None, cpus: str | None, memory: str | None, err: IO[str]
) -> ResourcePool:
    """This machine's GPUs, CPUs and memory, as ``--gpus``/``--cpus``/``--memory`` (or
    ``ORCHESTRATOR_GPUS``) narrow them; what detection had to say goes to ``err``."""
    from orchestrator.engine.inventory import machine_inventory
    from orchestrator.engine.resources import ResourcePool

    inventory = machine_inventory(gpus=gpus, cpus=cpus, memory=memory)
    for note in inventory.notes:
        err.write(f"note: {note}\n")
    return ResourcePool(inventory)


def load_plugins(options: RunOptions, err: IO[str]) -> PluginHost:
    """Discover the plugins allowed by ``options``; problems are reported, not fatal."""
    return PluginHost.installed(
        err, allow=options.allow_plugins, deny=options.deny_plugins, strict=options.strict_plugins
    )


def _apply_cache_flag(loaded: LoadedSpec, enabled: bool | None) -> None:
    """``--cache BOOL`` sets ``cache.disable: not BOOL``, as Polyaxon's CLI does."""
    if enabled is None:
        return
    op = loaded.operation
    op.cache = msgspec.structs.replace(op.cache or m.Cache(), disable=not enabled)


def spec_path_of(source: str) -> str:
    """Where the spec came from, absolute, so resume works from any folder."""
    if source.startswith(("http://", "https://")):
        return source
    return str(Path(source).resolve())


def run_sweep(
    loaded: LoadedSpec,
    overrides: dict[str, str],
    options: RunOptions,
    *,
    resume_latest: bool = False,
) -> int:
    """Run a new sweep (or, with ``resume_latest``, continue the newest one of this spec).
    The plan is compiled first: a spec that cannot run creates nothing (no home folder)."""
    from orchestrator.spec.dag import is_dag

    if is_dag(loaded):
        from orchestrator.dag_runner import run_dag

        return run_dag(loaded, overrides, options, resume_latest=resume_latest)
    plan = compile_plan(loaded, overrides, paths=run_paths(options.home), name=options.name)
    ensure_home(options.home)  # a new home is private (0700); an existing one keeps its mode
    journal = open_journal(journal_path(options.home), options.err)
    try:
        if resume_latest:
            newest = journal.latest_sweep_of_spec(spec_path_of(loaded.source))
            if newest is not None:
                return resume_in(journal, newest, options, overrides=overrides, loaded=loaded)
        return _execute(journal, plan, loaded, overrides, options, None)
    finally:
        journal.close()


def resume_sweep(
    ref: str,
    options: RunOptions,
    *,
    overrides: dict[str, str],
    force: bool = False,
    only_states: set[str] | None = None,
) -> int:
    """``resume`` (everything not succeeded) or ``rerun`` (only ``only_states``); where no
    sweep ever ran, NotFoundError, and nothing is created."""
    path = existing_journal(options.home)
    ensure_home(options.home)  # runs/ and cache/, private, if they went missing
    journal = open_journal(path, options.err)
    try:
        return resume_in(
            journal, ref, options, overrides=overrides, force=force, only_states=only_states
        )
    finally:
        journal.close()


def resume_in(
    journal: Journal,
    ref: str,
    options: RunOptions,
    *,
    overrides: dict[str, str],
    loaded: LoadedSpec | None = None,
    force: bool = False,
    only_states: set[str] | None = None,
) -> int:
    """Continue sweep ``ref`` of ``journal`` (a pipeline: its nodes, see
    :func:`orchestrator.history.prepare_dag_resume`)."""
    row = journal.find_sweep(ref)
    if row.kind == "dag":
        from orchestrator.dag_runner import execute_dag
        from orchestrator.history import prepare_dag_resume

        dag = prepare_dag_resume(
            journal,
            row,
            home=options.home,
            overrides=overrides,
            loaded=loaded,
            force=force,
            only_states=only_states,
        )
        options.name = options.name or row.name
        return execute_dag(journal, dag.plan, dag.loaded, dag.overrides, options, dag)
    ready = prepare_resume(
        journal,
        row,
        home=options.home,
        overrides=overrides,
        loaded=loaded,
        force=force,
        only_states=only_states,
    )
    options.name = options.name or ready.row.name
    return _execute(journal, ready.plan, ready.loaded, ready.overrides, options, ready.resume)


def _execute(
    journal: Journal,
    plan: Plan,
    loaded: LoadedSpec,
    overrides: dict[str, str],
    options: RunOptions,
    resume: Resume | None,
) -> int:
    outputs = guard_outputs(options)  # a closed pipe or terminal stops the sweep cleanly
    event_log = open_event_log(options.log_json, options.err)  # before anything runs
    try:
        keys = plan.expansion.keys if plan.expansion is not None else None
        # No redrawn status line where JSON records go to the same terminal.
        tty = options.err.isatty()
        live = tty and not options.as_json and options.log_json != "-"
        # --json for a program: stderr says only what carries news (failures, a stop).
        reporter = Reporter(
            options.err,
            live=live,
            keys=keys,
            quiet=options.as_json and not tty,
            objective=objective_of(plan.spec.operation.matrix),
        )
        # Whatever the sweep says on stderr (plugins, signals) goes above the status line.
        said = dataclasses.replace(options, err=reporter.err)
        controller = _build(journal, plan, loaded, overrides, said, resume)
        fast_child_watcher()
        settle_if_owned()  # what the sweep is set up with lives as long as it does
        result = anyio.run(
            _main, controller, reporter, reporter.err, options.grace, event_log, outputs
        )
    finally:
        if event_log is not None:
            event_log.close()
    out = options.out
    if options.as_json:  # streamed: a big sweep's runs are read from the journal by pages
        write_summary_json(out, result.sweep_id, result.state.value, result.runs, result.reason)
        out.write("\n")
    else:
        objective = objective_of(plan.spec.operation.matrix)
        show = show_hint(result.sweep_id, home_arg(options.home))
        write_final_table(out, result.runs, total=controller.total, objective=objective, show=show)
        out.write("\n")
        reason = f" ({result.reason})" if result.reason else ""
        out.write(f"\nsweep {result.sweep_id[:12]} {result.state.value}{reason}\n")
    out.flush()
    hints = resume_hint(
        result.sweep_id, result.state.value, home_arg(options.home), adaptive=controller.adaptive
    )
    for hint in hints:
        options.err.write(hint + "\n")
    if result.journal_error is not None:  # the journal does not hold all of this sweep
        options.err.write(f"orchestrator: journal write failed: {result.journal_error}\n")
        return EXIT_FAILED
    return EXIT_OK if result.state is SweepState.SUCCEEDED else EXIT_FAILED


def home_arg(home: Path) -> str | None:
    """``--home`` as a command typed here must give it; None where the default finds it."""
    import argparse

    from orchestrator.cli.options import home as default_home

    return None if home == default_home(argparse.Namespace()) else str(home)


def where_runs_go(options: RunOptions) -> tuple[ResourcePool | None, DaskCluster | None]:
    """This machine's resource pool (local runs), or the Dask cluster of ``--scheduler``
    (its workers hold the resources: no local pool), checked before anything is
    journaled."""
    if options.scheduler is None:
        return machine_pool(options.gpus, options.cpus, options.memory, options.err), None
    from orchestrator.executors.dask_executor import DaskCluster

    cluster = DaskCluster(options.scheduler, grace=options.grace)
    cluster.check()
    return None, cluster


def configured_plugins(loaded: LoadedSpec, options: RunOptions) -> PluginHost:
    """The installed plugins (as ``--plugin``/``--no-plugin`` choose), told the home, the spec
    and the options before anything runs."""
    plugins = load_plugins(options, options.err)
    plugins.pm.hook.orchestrator_configure.call_historic(
        kwargs={"config": {"home": options.home, "spec": loaded, "options": options}}
    )
    return plugins


def announced_settings(
    loaded: LoadedSpec,
    overrides: dict[str, str],
    options: RunOptions,
    concurrency: int,
    warnings: Sequence[str],
) -> SweepSettings:
    """What the command line's options ask of a sweep or pipeline of ``loaded``, once the
    sections with no local meaning and the plan's warnings are said on stderr."""
    err = options.err
    for note in loaded.ignored:
        err.write(f"note: {note}: no local meaning, ignored\n")
    write_warnings(err, warnings)
    return SweepSettings(
        home=options.home,
        spec_path=spec_path_of(loaded.source),
        concurrency=concurrency,
        grace=options.grace,
        name=options.name,
        description=options.description,
        tags=tuple(options.tags),
        overrides=overrides,
        max_time=options.max_time,
    )


def _build(
    journal: Journal,
    plan: Plan,
    loaded: LoadedSpec,
    overrides: dict[str, str],
    options: RunOptions,
    resume: Resume | None,
) -> SweepController:
    """The sweep's controller, with the installed plugins; says on stderr what will run."""
    err = options.err
    _apply_cache_flag(loaded, options.cache)
    plugins = configured_plugins(loaded, options)
    limit, source = concurrency_of(plan.concurrency, options.concurrency)
    settings = announced_settings(loaded, overrides, options, limit, plan.warnings)
    pool, cluster = where_runs_go(options)
    executor = cluster.executor(plan.request) if cluster is not None else None
    controller = build_sweep(
        plan,
        settings,
        journal=journal,
        plugins=plugins,
        resume=resume,
        resources=pool,
        executor=executor,
    )
    what = "sweep"
    if resume is not None:
        done = len(resume.succeeded)
        todo = f"{len(resume.only)} to re-run" if resume.only is not None else f"{done} done"
        what = f"resuming sweep ({todo})"
    err.write(
        f"{what} {controller.sweep_id[:12]} ({loaded.source}): {_runs_note(controller)}, "
        f"concurrency {limit} ({source}){_seed_note(plan)}; journal {journal.path}\n"
    )
    err.flush()
    return controller
