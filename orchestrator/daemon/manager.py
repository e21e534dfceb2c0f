"""Sweeps submitted to the daemon: each runs as a task, all under one limit of running runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from orchestrator.engine.build import SweepSettings, build_sweep
from orchestrator.engine.events import EVENT_TYPES, Event
from orchestrator.engine.open_mapping import OpenMapping
from orchestrator.engine.plugin_host import PluginHost
from orchestrator.engine.recovery import LOST
from orchestrator.engine.slots import PrioritySlots
from orchestrator.engine.sweep import SweepController
from orchestrator.exceptions import NotFoundError, SpecError, SweepBusyError, UnavailableError
from orchestrator.history import prepare_resume
from orchestrator.spec import compile_plan, load_text
from orchestrator.spec import models as m
from orchestrator.store.journal import Journal
from orchestrator.store.layout import run_paths

__all__ = ["Submission", "SweepManager"]


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
    ) -> None:
        self.home = home
        self.journal = journal
        self.slots = PrioritySlots(max_runs)
        self.grace = grace
        self.publish = publish
        self.plugins = plugins
        self.report = report or (lambda message: None)
        self.sweeps: dict[str, SweepController] = {}
        self.accepting = True
        self._tg: anyio.abc.TaskGroup | None = None
        #: Set whenever no sweep is running (shutdown waits on it, never polls).
        self._idle = anyio.Event()
        self._idle.set()

    async def run(
        self,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await anyio.sleep_forever()

    def submit(self, submission: Submission) -> tuple[str, int]:
        """Validate and start a sweep; raises SpecError (a 400) when the spec is bad."""
        if not self.accepting or self._tg is None:
            raise UnavailableError("the daemon is shutting down")
        base = Path(submission.base_dir) if submission.base_dir else Path.cwd()
        source = submission.spec_path or "<submitted>"
        loaded = load_text(submission.spec, source, base)
        plan = compile_plan(
            loaded,
            submission.params,
            paths=run_paths(self.home),
            name=submission.name,
            open_mapping=submission.open,
        )
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
        settings = SweepSettings(
            home=self.home,
            spec_path=source,
            concurrency=submission.concurrency or plan.concurrency or self.slots.total,
            grace=self.grace,
            name=submission.name,
            overrides=submission.params,
            priority=submission.priority,
            spec_text=(submission.spec, str(base)),
        )
        controller = self._build(plan, settings, open_mapping=open_mapping)
        return controller.sweep_id, len(plan)

    async def _drive(self, controller: SweepController) -> None:
        subscription = controller.bus.subscribe(EVENT_TYPES, buffer=10_000)

        async def forward() -> None:
            async with subscription.receive:
                event: Event
                async for event in subscription.receive:
                    self.publish(event)
                    subscription.handled()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(forward)
                try:
                    await controller.run()
                finally:
                    await controller.bus.close()
        except Exception as exc:  # one broken sweep must not take the daemon down
            self.report(f"sweep {controller.sweep_id[:12]} crashed: {type(exc).__name__}: {exc}")
        finally:
            self.sweeps.pop(controller.sweep_id, None)
            if not self.sweeps:
                self._idle.set()

    def resume_lost(self) -> list[str]:
        """After a crash: continue every daemon sweep whose daemon died (its unfinished runs
        were just marked ``orchestrator_lost``), running what has not succeeded."""
        rows = self.journal.lost_daemon_sweeps(LOST)
        for row in rows:
            self._resume_row(row, force=True, only_states=None)
        return [row.id for row in rows]

    def resume(
        self, ref: str, *, force: bool = False, only_states: set[str] | None = None
    ) -> tuple[str, int]:
        """``resume``/``rerun`` through the daemon: the sweep continues here."""
        row = self.journal.find_sweep(ref)
        if row.id in self.sweeps:
            raise SweepBusyError(f"sweep {row.id[:12]} is still running")
        return self._resume_row(row, force=force, only_states=only_states)

    def _resume_row(
        self, row: Any, *, force: bool, only_states: set[str] | None
    ) -> tuple[str, int]:
        ready = prepare_resume(
            self.journal, row, home=self.home, force=force, only_states=only_states
        )
        settings = SweepSettings(
            home=self.home,
            spec_path=ready.loaded.source,
            concurrency=row.concurrency or 1,
            grace=self.grace,
            name=row.name,
            overrides=ready.overrides,
        )
        self._build(ready.plan, settings, resume=ready.resume)
        return row.id, len(ready.plan)

    def _build(self, plan: Any, settings: SweepSettings, **services: Any) -> SweepController:
        """Build a sweep on the daemon's journal, plugins and shared run slots, and start it."""
        controller = build_sweep(
            plan,
            settings,
            journal=self.journal,
            plugins=self.plugins,
            shared_slots=self.slots,
            **services,
        )
        self._start(controller)
        return controller

    def _start(self, controller: SweepController) -> None:
        assert self._tg is not None
        self.sweeps[controller.sweep_id] = controller
        if self._idle.is_set():
            self._idle = anyio.Event()
        self._tg.start_soon(self._drive, controller)

    def add_configurations(self, sweep_id: str, values: list[dict[str, Any]]) -> list[int]:
        """Ask: more configurations for an open sweep, each checked before it is accepted."""
        controller = self.sweeps.get(sweep_id)
        if controller is None or controller.open_mapping is None:
            raise NotFoundError("no open sweep with that id")
        if controller.open_mapping.closed:
            raise NotFoundError("that sweep is closed")
        first = controller.open_mapping.next_index
        for offset, entry in enumerate(values):
            if not isinstance(entry, dict):
                raise SpecError(
                    f"expected a mapping, got {type(entry).__name__}", field=f"values[{offset}]"
                )
            try:
                controller.plan.check_entry(first + offset, entry)
            except SpecError as exc:
                exc.field = (exc.field or "").replace(
                    f"matrix.values[{first + offset}]", f"values[{offset}]"
                )
                raise
        return controller.open_mapping.add(values)

    def close_sweep(self, sweep_id: str) -> bool:
        controller = self.sweeps.get(sweep_id)
        if controller is None or controller.open_mapping is None:
            return False
        controller.open_mapping.close()
        return True

    def stop_sweep(self, sweep_id: str, reason: str = "stopped through the API") -> bool:
        controller = self.sweeps.get(sweep_id)
        if controller is None:
            return False
        controller.request_stop(reason)
        return True

    def stop_run(self, run_id: str, reason: str = "stopped through the API") -> bool:
        return any(c.ctx.stop_run(run_id, reason) for c in list(self.sweeps.values()))

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
