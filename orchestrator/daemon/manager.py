"""Sweeps submitted to the daemon: each runs as a task, all under one limit of running runs.

A pipeline (``run.kind: dag``) is one of them: its nodes' runs take the daemon's run slots
too (and its own ``dag.concurrency``), its events and every node's reach the daemon's feed.

A sweep is accepted (``submit``, ``resume``) only once its start is committed to the journal:
an answer that says so survives a kill -9 the moment it is sent (a restarted daemon resumes
the sweep). A journal that cannot write makes those calls fail with UnavailableError (503).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from orchestrator.daemon.journal_watch import JournalWatch
from orchestrator.daemon.specs import SUBMIT_TIMEOUT_S, Compile, SpecMemo
from orchestrator.engine.build import SweepSettings, build_dag, build_sweep
from orchestrator.engine.bus import EventBus
from orchestrator.engine.dag import DagController
from orchestrator.engine.events import EVENT_TYPES, Event
from orchestrator.engine.op_hooks import hooks_after_sweep
from orchestrator.engine.open_mapping import OpenMapping
from orchestrator.engine.plugin_host import PluginHost
from orchestrator.engine.records import SweepResult
from orchestrator.engine.recovery import LOST
from orchestrator.engine.resources import ResourcePool
from orchestrator.engine.slots import PrioritySlots
from orchestrator.engine.sweep import SweepController
from orchestrator.exceptions import (
    NotFoundError,
    OrchestratorError,
    SpecError,
    StoreError,
    SweepBusyError,
    UnavailableError,
)
from orchestrator.executors.base import Executor
from orchestrator.history import find_sweep, prepare_dag_resume, prepare_resume
from orchestrator.spec import models as m
from orchestrator.spec.dag import DagPlan
from orchestrator.spec.resources import ResourceRequest
from orchestrator.store.journal import Journal
from orchestrator.store.layout import run_paths

if TYPE_CHECKING:
    from orchestrator.engine.dag import DagResume

__all__ = ["SUBMIT_TIMEOUT_S", "Submission", "SweepManager"]

#: What the daemon runs: a sweep, or a pipeline (whose nodes are sweeps it runs itself).
Controller = SweepController | DagController


@dataclass
class Submission:
    spec: str
    params: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    #: Folder that relative paths in the spec (pathRef, the default working folder) mean.
    base_dir: str | None = None
    #: Where the spec came from, for the journal (``resume`` reads it again).
    spec_path: str | None = None
    concurrency: int | None = None
    #: Keep the mapping open: configurations may be added until the sweep is closed.
    open: bool = False
    #: Freed run slots go to the sweep of highest priority first (then first come).
    priority: int = 0


def _first(group: BaseExceptionGroup[Exception]) -> BaseException:
    """The first exception in ``group``, however deeply nested."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


class SweepManager:
    """Owns the journal, the global run limit and the running sweeps."""

    def __init__(
        self,
        home: Path,
        journal: Journal,
        *,
        max_runs: int,
        grace: float,
        publish: Any,
        plugins: PluginHost,
        report: Any = None,
        inform: Any = None,
        resources: ResourcePool | None = None,
        executors: Callable[[ResourceRequest], Executor] | None = None,
    ) -> None:
        self.home = home
        self.journal = journal
        self.slots = PrioritySlots(max_runs)
        #: The machine's GPUs, CPUs and memory, one inventory shared by every sweep.
        self.resources = resources
        #: Where runs go when not here: a sweep's executor for its runs' request (Dask).
        self.executors = executors
        self.grace = grace
        self.publish = publish
        self.plugins = plugins
        #: Where problems (``report``) and news (``inform``; default: ``report``) are told.
        self.report = report or (lambda message: None)
        self.inform = inform or self.report
        self.sweeps: dict[str, Controller] = {}
        self.accepting = True
        self._tg: anyio.abc.TaskGroup | None = None
        #: Set whenever no sweep is running (shutdown waits on it, never polls).
        self._idle = anyio.Event()
        self._idle.set()
        #: One lock per open mapping being changed (see :meth:`_lock`).
        self._locks: dict[str, anyio.Lock] = {}
        #: Submitted specs, loaded once (see :mod:`orchestrator.daemon.specs`).
        self._specs = SpecMemo()
        #: Each run's ``globals.*`` paths (the same for every sweep of this home).
        self._paths = run_paths(home)
        #: What relative paths of a submission without a base folder mean: where the daemon
        #: was started (it never changes folder; asked once, not per submission).
        self._cwd = Path.cwd()
        journal.on_health(self._journal_health)

    def _journal_health(self, error: str | None) -> None:
        """The journal's writer (on its thread) started failing, or writes again."""
        if error is not None:
            self.report(f"the journal cannot write ({error}): new sweeps get 503 until it can")
        else:
            self.inform("the journal writes again")

    async def run(
        self,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            # Other processes' sweeps, live on the daemon's events; what recovery wrote
            # before is history (flushed first, so the watch starts past it).
            await self.journal.flush()
            watch = JournalWatch(
                self.journal.path, self.publish, self.sweeps.__contains__, report=self.report
            )
            await tg.start(watch.run)
            task_status.started()
            await anyio.sleep_forever()

    async def submit(self, submission: Submission) -> tuple[str, int, list[str], str]:
        """Validate, journal and start a sweep, returning once it is committed to the journal:
        its id, run count (a pipeline: its node count), the plan's warnings (``-P`` the matrix
        overrides) and its kind (``dag``: a pipeline). SpecError (a 400) for a bad spec;
        UnavailableError (a 503) while shutting down or when the journal cannot write it (then
        nothing of it runs)."""
        if not self.accepting or self._tg is None:
            raise UnavailableError("the daemon is shutting down")
        base = Path(submission.base_dir) if submission.base_dir else self._cwd
        source = submission.spec_path or "<submitted>"
        how = Compile(
            submission.params, self._paths, name=submission.name, open_mapping=submission.open
        )
        loaded, plan = await self._specs.prepare(submission.spec, source, base, how)
        if not self.accepting or self._tg is None:
            raise UnavailableError("the daemon is shutting down")
        settings = SweepSettings(
            home=self.home,
            spec_path=source,
            concurrency=submission.concurrency or plan.concurrency or self.slots.total,
            grace=self.grace,
            name=submission.name,
            overrides=submission.params,
            priority=submission.priority,
            spec_text=(submission.spec, str(base)),
            by_daemon=True,
        )
        if isinstance(plan, DagPlan):
            dag = self._build_dag(plan, settings)
            await self._accept(dag)
            return dag.sweep_id, len(plan.nodes), list(plan.warnings), "dag"
        open_mapping = None
        if submission.open:
            matrix = loaded.operation.matrix
            if not isinstance(matrix, m.Mapping):
                raise SpecError(
                    "an open sweep needs a mapping matrix (values may be empty)",
                    field="matrix",
                    file=source,
                )
            open_mapping = OpenMapping(len(matrix.values))
        controller = self._build(plan, settings, open_mapping=open_mapping)
        await self._accept(controller)
        kind = plan.expansion.kind if plan.expansion is not None else "single"
        return controller.sweep_id, controller.total, list(plan.warnings), kind

    def _forward(self, bus: EventBus, tg: anyio.abc.TaskGroup) -> None:
        """Publish ``bus``'s events on the daemon's feed, in a task of ``tg`` (subscribed
        now, so nothing the sweep says once it runs is missed)."""
        subscription = bus.subscribe(EVENT_TYPES, buffer=10_000)

        async def forward() -> None:
            # What is queued is taken in one turn of the loop: a chunk of output's LogLines
            # arrive together, and a wait per event would cost a loop turn per line.
            receive = subscription.receive
            async with receive:
                event: Event
                async for event in receive:
                    self.publish(event)
                    count = 1
                    with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                        while True:
                            self.publish(receive.receive_nowait())
                            count += 1
                    subscription.handled(count)

        tg.start_soon(forward)

    async def _drive(self, controller: Controller) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._forward(controller.bus, tg)
                if isinstance(controller, DagController):  # each node's events too
                    controller.node_observers.append(self._forward)
                try:
                    result = await controller.run()
                finally:
                    await controller.bus.close()
            if isinstance(controller, SweepController):  # a pipeline ran its hooks itself
                await self._after_hooks(controller, result)
        except* UnavailableError as group:  # its start could not be journaled: it did not run
            self.report(str(_first(group)))
        except* Exception as group:  # one broken sweep must not take the daemon down
            exc = _first(group)
            self.report(f"sweep {controller.sweep_id[:12]} crashed: {type(exc).__name__}: {exc}")
        finally:
            self._release(controller.sweep_id)

    async def _after_hooks(self, controller: SweepController, result: SweepResult) -> None:
        """The sweep's ``hooks``, as the command line runs them; a failing hook is reported
        in one line (and journaled as its own failed sweep), never the sweep's state."""
        said = io.StringIO()
        await hooks_after_sweep(controller, result, said)
        for line in said.getvalue().splitlines():
            self.report(f"sweep {controller.sweep_id[:12]}: {line}")

    def resume_lost(self) -> list[str]:
        """After a crash: continue every daemon sweep whose daemon died (its unfinished runs
        were just marked ``orchestrator_lost``), running what has not succeeded; returns their
        ids. One that cannot be (its spec file is gone) is reported, not fatal."""
        resumed = []
        for row in self.journal.lost_daemon_sweeps(LOST):
            if row.parent_id is not None:  # a pipeline's node (or a hook): its pipeline's
                continue
            try:
                controller = self._resumed(row, force=True, only_states=None)
            except OrchestratorError as exc:
                self.report(f"sweep {row.id[:12]} not resumed: {exc}")
                continue
            self._start(controller)
            resumed.append(row.id)
        return resumed

    async def resume(
        self, ref: str, *, force: bool = False, only_states: set[str] | None = None
    ) -> tuple[str, int]:
        """``resume``/``rerun`` through the daemon: the sweep continues here, returning once
        that is committed to the journal (UnavailableError when it cannot be)."""
        if not self.accepting:
            raise UnavailableError("the daemon is shutting down")
        row = find_sweep(self.journal, ref)
        if row.id in self.sweeps:
            raise SweepBusyError(f"sweep {row.id[:12]} is still running")
        controller = self._resumed(row, force=force, only_states=only_states)
        await self._accept(controller)
        if isinstance(controller, DagController):
            return row.id, len(controller.plan.nodes)
        return row.id, len(controller.plan)

    def _resumed(self, row: Any, *, force: bool, only_states: set[str] | None) -> Controller:
        """``row`` continued (a pipeline: its nodes that succeeded kept, as the command
        line's ``resume``)."""
        if row.kind == "dag":
            dag = prepare_dag_resume(
                self.journal, row, home=self.home, force=force, only_states=only_states
            )
            settings = self._resumed_settings(row, dag.loaded.source, dag.overrides)
            return self._build_dag(dag.plan, settings, dag.resume)
        ready = prepare_resume(
            self.journal, row, home=self.home, force=force, only_states=only_states
        )
        settings = self._resumed_settings(row, ready.loaded.source, ready.overrides)
        still_open = None if ready.open_from is None else OpenMapping(ready.open_from)
        return self._build(ready.plan, settings, resume=ready.resume, open_mapping=still_open)

    def _resumed_settings(
        self, row: Any, spec_path: str, overrides: dict[str, str]
    ) -> SweepSettings:
        """A resumed sweep's or pipeline's settings: as journaled, on this daemon (the spec
        text goes on to a pipeline's node sweeps; a resumed sweep's row keeps its own)."""
        return SweepSettings(
            home=self.home,
            spec_path=spec_path,
            concurrency=row.concurrency or 1,
            grace=self.grace,
            name=row.name,
            overrides=overrides,
            spec_text=_spec_text(row),
            by_daemon=True,
        )

    def _build(self, plan: Any, settings: SweepSettings, **services: Any) -> SweepController:
        """Build a sweep on the daemon's journal, plugins and shared run slots (its start is
        queued in the journal; nothing runs yet)."""
        return build_sweep(
            plan,
            settings,
            journal=self.journal,
            plugins=self.plugins,
            shared_slots=self.slots,
            resources=self.resources,
            executor=self.executors(plan.request) if self.executors is not None else None,
            **services,
        )

    def _build_dag(
        self, plan: DagPlan, settings: SweepSettings, resume: DagResume | None = None
    ) -> DagController:
        """Build a pipeline whose nodes' runs take the daemon's run slots too (its start is
        queued in the journal; nothing runs yet)."""
        return build_dag(
            plan,
            settings,
            journal=self.journal,
            plugins=self.plugins,
            executor_for=self.executors,
            resume=resume,
            resources=self.resources,
            shared_slots=self.slots,
        )

    async def _accept(self, controller: Controller) -> None:
        """Start ``controller`` once its start is committed to the journal. It counts as one
        of the daemon's sweeps while that commits, so a second resume of it is refused."""
        self._hold(controller)
        try:
            await controller.commit_start(refused="not accepted")
        except BaseException:
            self._release(controller.sweep_id)
            raise
        assert self._tg is not None
        self._tg.start_soon(self._drive, controller)

    def _start(self, controller: Controller) -> None:
        """Start ``controller`` now (:meth:`SweepController.run` commits its start first)."""
        assert self._tg is not None
        self._hold(controller)
        self._tg.start_soon(self._drive, controller)

    def _hold(self, controller: Controller) -> None:
        self.sweeps[controller.sweep_id] = controller
        if self._idle.is_set():
            self._idle = anyio.Event()

    def _release(self, sweep_id: str) -> None:
        self.sweeps.pop(sweep_id, None)
        self._locks.pop(sweep_id, None)
        if not self.sweeps:
            self._idle.set()

    async def add_configurations(self, sweep_id: str, values: list[dict[str, Any]]) -> list[int]:
        """Ask: more configurations for an open sweep, each checked, then committed to the
        journal (a restarted daemon runs them too), then queued; their indexes. NotFoundError
        (404), SpecError (400), UnavailableError (503: the journal cannot write them)."""
        async with self._lock(sweep_id):
            controller, mapping = self._open(sweep_id)
            first = mapping.next_index
            for offset, entry in enumerate(values):
                if not isinstance(entry, dict):
                    raise SpecError(
                        f"expected a mapping, got {type(entry).__name__}",
                        field=f"values[{offset}]",
                    )
                try:
                    controller.plan.check_entry(first + offset, entry)
                except SpecError as exc:
                    exc.field = (exc.field or "").replace(
                        f"matrix.values[{first + offset}]", f"values[{offset}]"
                    )
                    raise
            self.journal.add_configurations(sweep_id, first, values)
            await self._commit(sweep_id, "configurations not accepted")
            return mapping.add(values)

    async def close_sweep(self, sweep_id: str) -> bool:
        """Close an open sweep once that is committed to the journal (UnavailableError when it
        cannot be); False when there is no open sweep with that id."""
        controller = self.sweeps.get(sweep_id)
        if not isinstance(controller, SweepController) or controller.open_mapping is None:
            return False
        async with self._lock(sweep_id):
            if not controller.open_mapping.closed:
                self.journal.close_mapping(sweep_id)
                await self._commit(sweep_id, "not closed")
                controller.open_mapping.close()
        return True

    def _open(self, sweep_id: str) -> tuple[SweepController, OpenMapping]:
        controller = self.sweeps.get(sweep_id)
        if not isinstance(controller, SweepController) or controller.open_mapping is None:
            raise NotFoundError("no open sweep with that id")
        if controller.open_mapping.closed:
            raise NotFoundError("that sweep is closed")
        return controller, controller.open_mapping

    def _lock(self, sweep_id: str) -> anyio.Lock:
        """Changes to one open mapping happen one at a time (an index is given only once)."""
        return self._locks.setdefault(sweep_id, anyio.Lock())

    async def _commit(self, sweep_id: str, what: str) -> None:
        try:
            await self.journal.commit(sweep_id)
        except StoreError as exc:
            raise UnavailableError(f"sweep {sweep_id[:12]}: {what}: {exc}") from None

    def stop_sweep(self, sweep_id: str, reason: str = "stopped through the API") -> bool:
        """Stop a sweep or pipeline this daemon runs, or one running node of a pipeline (that
        node alone: its pipeline goes on, its downstream nodes decided by their triggers)."""
        controller = self.sweeps.get(sweep_id)
        if controller is None:
            controller = next((n for n in self._nodes() if n.sweep_id == sweep_id), None)
        if controller is None:
            return False
        controller.request_stop(reason)
        return True

    def stop_run(self, run_id: str, reason: str = "stopped through the API") -> bool:
        return any(c.ctx.stop_run(run_id, reason) for c in self._sweeps_running())

    def _nodes(self) -> list[SweepController]:
        """The node sweeps running now, of every pipeline."""
        return [
            node
            for dag in list(self.sweeps.values())
            if isinstance(dag, DagController)
            for node in list(dag.running.values())
            if node is not None
        ]

    def _sweeps_running(self) -> list[SweepController]:
        """Every sweep running now: the daemon's own, and pipelines' nodes."""
        own = [c for c in self.sweeps.values() if isinstance(c, SweepController)]
        return own + self._nodes()

    async def shutdown(self, grace: float) -> None:
        """Stop taking work; let running sweeps finish for ``grace`` seconds, then stop them."""
        self.accepting = False
        with anyio.move_on_after(grace):
            await self._idle.wait()
        for controller in list(self.sweeps.values()):
            controller.request_stop("the daemon is shutting down")
        with anyio.move_on_after(self.grace + 5):
            await self._idle.wait()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()


def _spec_text(row: Any) -> tuple[str, str] | None:
    """The spec text and base folder a daemon journaled with ``row`` (a resumed pipeline's
    nodes carry them, so that a later daemon can resume it again)."""
    if row.spec_text is None:
        return None
    return row.spec_text, row.base_dir or "."
