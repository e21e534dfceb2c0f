"""One way to assemble a sweep: settings and services in, a ready controller out.

The command line, the daemon (new and resumed sweeps) and ``orchestrator.testing`` all build
their sweeps here, so a new service (a resource inventory, a searcher) is wired in one place.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from orchestrator.engine.bus import EventBus
from orchestrator.engine.jobs import sweep_environment
from orchestrator.engine.open_mapping import OpenMapping
from orchestrator.engine.plugin_host import PluginHost
from orchestrator.engine.records import Resume
from orchestrator.engine.resources import ResourcePool
from orchestrator.engine.slots import PrioritySlots
from orchestrator.engine.states import SweepState
from orchestrator.engine.sweep import SweepController
from orchestrator.exceptions import SpecError
from orchestrator.executors.base import Executor
from orchestrator.search.registry import searcher_of
from orchestrator.spec.resolve import Plan
from orchestrator.store.journal import Journal
from orchestrator.store.layout import sweep_dir

if TYPE_CHECKING:
    from orchestrator.engine.dag import DagController, DagResume
    from orchestrator.spec.dag import DagPlan
    from orchestrator.spec.resources import ResourceRequest

__all__ = ["SweepSettings", "build_dag", "build_sweep"]


@dataclass(frozen=True)
class SweepSettings:
    """What the user asked of one sweep (the command line's options, a daemon submission)."""

    home: Path
    #: Where the spec came from, journaled so that ``resume`` can read it again.
    spec_path: str
    concurrency: int
    #: Seconds between SIGTERM and SIGKILL when runs are stopped.
    grace: float = 10.0
    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    #: ``-P`` values, journaled with the sweep (a resume applies them again).
    overrides: Mapping[str, str] = field(default_factory=dict)
    #: ``--max-time``: seconds the whole sweep may take.
    max_time: float | None = None
    #: A daemon's share of run slots goes to higher priorities first.
    priority: int = 0
    #: The spec text and base folder, journaled by the daemon so a restarted one can resume.
    spec_text: tuple[str, str] | None = None
    #: Run by a daemon: if that daemon is lost, the next one resumes the sweep.
    by_daemon: bool = False
    #: Finished runs kept in memory; a bigger sweep lets them go (its memory stays flat)
    #: and reads what it needs of them from the journal.
    keep_finished: int = 1000
    #: A pipeline's node: the pipeline's sweep id and the node's name (journaled with it).
    parent_id: str | None = None
    node: str | None = None


def build_sweep(
    plan: Plan,
    settings: SweepSettings,
    *,
    journal: Journal,
    plugins: PluginHost | None = None,
    executor: Executor | None = None,
    resume: Resume | None = None,
    shared_slots: PrioritySlots | None = None,
    open_mapping: OpenMapping | None = None,
    resources: ResourcePool | None = None,
) -> SweepController:
    """A controller for a new sweep, or for ``resume``'s sweep; plugins get a scope of their
    own for it (a plugin switched off here stays on for other sweeps of the process).

    The sweep's start is queued in the journal here (a new sweep as ``created``); whoever
    answers that it is accepted first awaits ``controller.commit_start()``.

    With ``resources`` (this machine's, or the daemon's shared pool) runs wait for what they
    ask for; a sweep whose runs could never fit is refused here (SpecError), before anything
    is journaled."""
    if resources is not None:
        never = resources.fits_ever(plan.request)
        if never is not None:
            raise SpecError(never, field="run.container.resources", file=plan.spec.component_source)
    if executor is None:
        from orchestrator.executors.local import LocalExecutor

        executor = LocalExecutor(settings.home)
    sweep_id = resume.sweep_id if resume is not None else uuid.uuid4().hex
    environ = sweep_environment()  # as of now: its runs, its tuner and its provenance
    searcher = None
    if plan.expansion is not None and plan.expansion.adaptive:  # else there is none to make
        searcher = searcher_of(plan, work_dir=sweep_dir(settings.home, sweep_id), environ=environ)
    scope = plugins.scope() if plugins is not None else None
    controller = SweepController(
        plan,
        settings,
        journal=journal,
        executor=executor,
        bus=EventBus(sweep_id),
        plugins=scope,
        resume=resume,
        shared_slots=shared_slots,
        open_mapping=open_mapping,
        resources=resources,
        searcher=searcher,
        base_env=environ,
    )
    if scope is not None:
        scope.on_strict_failure = lambda reason: controller.request_stop(
            reason, final_state=SweepState.FAILED
        )
    controller.open_in_journal()
    return controller


def build_dag(
    plan: DagPlan,
    settings: SweepSettings,
    *,
    journal: Journal,
    plugins: PluginHost | None = None,
    executor: Executor | None = None,
    executor_for: Callable[[ResourceRequest], Executor] | None = None,
    resume: DagResume | None = None,
    resources: ResourcePool | None = None,
    cache: bool | None = None,
    err: IO[str] | None = None,
    shared_slots: PrioritySlots | None = None,
) -> DagController:
    """A controller for a new pipeline, or for ``resume``'s; its row is queued in the journal
    here (as :func:`build_sweep` does). Each node becomes a sweep of its own, built when it
    starts; ``settings.concurrency`` bounds the runs of all nodes together. ``executor_for``:
    each node's executor for what its runs ask (a Dask cluster's); else ``executor``. ``cache``:
    ``--cache BOOL`` for every node (None: each node's ``cache``, on by default).
    ``shared_slots``: a daemon's run slots, which every node's runs take too."""
    from orchestrator.engine.dag import DagController

    if executor is None:
        from orchestrator.executors.local import LocalExecutor

        executor = LocalExecutor(settings.home)
    controller = DagController(
        plan,
        settings,
        journal=journal,
        executor=executor,
        executor_for=executor_for,
        plugins=plugins,
        resources=resources,
        resume=resume,
        cache=cache,
        err=err,
        shared_slots=shared_slots,
    )
    controller.open_in_journal()
    return controller
