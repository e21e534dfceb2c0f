"""The pipeline controller: runs a DAG's nodes as their triggers allow, each one a sweep.

A pipeline (``run.kind: dag``) is a sweep row of kind ``dag``; each of its operations that
runs is a sweep of its own (``parent_id`` = the pipeline, ``node`` = the operation's name),
driven by the ordinary :class:`~orchestrator.engine.sweep.SweepController` (a node without a
matrix is a 1-run sweep). A node that never runs is journaled too, ``skipped`` or
``upstream_failed`` (or ``stopped`` when the pipeline stopped first), with the reason.

When a node ends, every node waiting on it is decided again (:mod:`orchestrator.engine
.triggers`, then its ``conditions``); one that may start gets its upstream nodes' params and
outputs, read from the journal (:class:`~orchestrator.spec.dag.Upstream`), and is compiled
then (``node_spec`` → ``compile_plan`` → ``build_sweep``). ``dag.concurrency`` bounds the
runs of all nodes together: one :class:`PrioritySlots` shared by every node's sweep.

How the pipeline ends follows Polyaxon's ``runs_check_pipeline``: ``failed`` if a node
failed (``failed`` only: a node ``upstream_failed`` never ran, and what made it so already
counts), ``stopped`` if every node was stopped, else ``succeeded``; stopped by the user, a
time budget or ``dag.earlyStopping``'s failure rule: ``stopped``; by its metric rule (a
target reached): ``succeeded``; either way its running nodes are stopped.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import anyio
import msgspec

from orchestrator.engine.bus import EventBus, Subscription
from orchestrator.engine.events import RunStateChanged, SweepFinished, SweepStarted
from orchestrator.engine.outcome import failure_reason
from orchestrator.engine.records import Resume, RunRecord, SweepResult, records_from_rows
from orchestrator.engine.slots import PrioritySlots
from orchestrator.engine.states import SWEEP_ALLOWED, TERMINAL, SweepState
from orchestrator.engine.sweep_journal import commit_start
from orchestrator.engine.transitions import move_sweep
from orchestrator.engine.triggers import trigger_decision
from orchestrator.exceptions import NotFoundError, SpecError
from orchestrator.executors.base import Executor
from orchestrator.spec import models as m
from orchestrator.store.journal import Journal
from orchestrator.store.rows import SweepRow

if TYPE_CHECKING:
    from orchestrator.engine.build import SweepSettings
    from orchestrator.engine.plugin_host import PluginHost
    from orchestrator.engine.resources import ResourcePool
    from orchestrator.engine.sweep import SweepController
    from orchestrator.spec import LoadedSpec, Plan
    from orchestrator.spec.dag import DagPlan, Upstream
    from orchestrator.spec.resources import ResourceRequest

__all__ = ["DagController", "DagResume", "dag_ending"]

#: A node's state, as the triggers read it.
_S = SweepState


@dataclass(frozen=True)
class DagResume:
    """Continue a journaled pipeline: its node sweeps by node name, and which to run again."""

    sweep_id: str
    nodes: dict[str, SweepRow]
    #: ``rerun``: run again only the nodes (and their runs) in these states; None
    #: (``resume``): every node that did not succeed.
    only_states: set[str] | None = None
    #: ``--force``: resume a node whose component changed.
    force: bool = False

    def keeps(self, row: SweepRow) -> bool:
        """Is this node's earlier ending kept as it is? A node that succeeded always is; one
        that never ran is decided anew (its upstream nodes may end otherwise this time)."""
        if row.state == _S.SUCCEEDED.value:
            return True
        if row.state in (_S.SKIPPED.value, _S.UPSTREAM_FAILED.value):
            return False
        return self.only_states is not None and row.state not in self.only_states


def dag_ending(states: Mapping[str, str]) -> tuple[SweepState, str | None]:
    """How a pipeline that was not stopped ends, given its nodes' final states (Polyaxon's
    ``runs_check_pipeline``)."""
    failed = sorted(name for name, state in states.items() if state == _S.FAILED.value)
    stopped = [name for name, state in states.items() if state == _S.STOPPED.value]
    if failed:
        return _S.FAILED, f"{len(failed)} node(s) failed: {', '.join(failed)}"
    if stopped and len(stopped) == len(states):
        return _S.STOPPED, "every node was stopped"
    return _S.SUCCEEDED, None


@dataclass
class _Early:
    """``dag.earlyStopping``: Polyaxon's server rules over the nodes and their runs."""

    failure_percent: float | None = None
    #: (metric, value, maximize) of each ``metric_early_stopping`` without a policy.
    metrics: list[tuple[str, float, bool]] = field(default_factory=list)

    @classmethod
    def of(cls, rules: Sequence[Any]) -> _Early:
        early = cls()
        percents = [r.percent for r in rules if isinstance(r, m.FailureEarlyStopping)]
        if percents:
            early.failure_percent = min(percents)
        for rule in rules:
            # A policy (median, truncation, diff) is a no-op on Polyaxon's server too.
            if isinstance(rule, m.MetricEarlyStopping) and rule.policy is None:
                early.metrics.append((rule.metric, rule.value, rule.optimization == "maximize"))
        return early

    def failure(self, states: Mapping[str, str], total: int) -> str | None:
        if self.failure_percent is None or not total:
            return None
        bad = sum(1 for s in states.values() if s in (_S.FAILED.value, _S.UPSTREAM_FAILED.value))
        if bad and bad / total >= self.failure_percent / 100:
            return f"early stopping: {bad} of {total} nodes failed (>= {self.failure_percent:g}%)"
        return None

    def metric(self, outputs: Mapping[str, Any]) -> str | None:
        for name, value, maximize in self.metrics:
            got = outputs.get(name)
            if isinstance(got, bool) or not isinstance(got, int | float):
                continue
            if (got >= value) if maximize else (got <= value):
                way = ">=" if maximize else "<="
                return f"early stopping: {name} = {got:g} {way} {value:g}"
        return None


class DagController:
    """Runs one pipeline to its end; built by :func:`orchestrator.engine.build.build_dag`."""

    def __init__(
        self,
        plan: DagPlan,
        settings: SweepSettings,
        *,
        journal: Journal,
        executor: Executor,
        executor_for: Callable[[ResourceRequest], Executor] | None = None,
        plugins: PluginHost | None = None,
        resources: ResourcePool | None = None,
        resume: DagResume | None = None,
        cache: bool | None = None,
        err: IO[str] | None = None,
        shared_slots: PrioritySlots | None = None,
    ) -> None:
        self.plan = plan
        self.settings = settings
        self.journal = journal
        #: Runs the pipeline's hooks; the nodes' runs too, unless ``executor_for`` gives each
        #: node an executor for what its runs ask (a Dask cluster's, per resource request).
        self.executor = executor
        self.executor_for = executor_for
        self.plugins = plugins
        self.resources = resources
        self.resume = resume
        self.cache = cache
        self.err = err
        sweep_id = resume.sweep_id if resume is not None else uuid.uuid4().hex
        self.bus = EventBus(sweep_id)
        op = plan.spec.operation
        self.name = settings.name or op.name or plan.spec.component.name
        self.state = SweepState.CREATED
        self.reason: str | None = None
        #: Every node's final state, by name (those kept from an earlier invocation too).
        self.states: dict[str, str] = {}
        self.reasons: dict[str, str | None] = {}
        #: Every node's sweep id, once it has one.
        self.sweeps: dict[str, str] = {}
        #: The nodes running now (None: being compiled).
        self.running: dict[str, SweepController | None] = {}
        self.slots = PrioritySlots(settings.concurrency)
        #: What each node's runs take: ``dag.concurrency``'s slot, and inside a daemon one of
        #: its ``--max-runs`` slots too (by the pipeline's priority).
        self.node_slots = (
            self.slots if shared_slots is None else _NodeSlots(self.slots, shared_slots)
        )
        self._early = _Early.of(plan.early_stopping or [])
        self._stop_state: SweepState | None = None
        self._upstream: dict[str, Upstream] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._opened = self._committed = False
        self._journal_error: str | None = None
        #: Called with each node's bus before the node runs, and a task group that lives as
        #: long as the node (``--log-json`` records the nodes' events this way).
        self.node_observers: list[Callable[[EventBus, anyio.abc.TaskGroup], None]] = []
        if resume is not None:
            for name, row in resume.nodes.items():
                self.sweeps[name] = row.id
                if name in plan.nodes and resume.keeps(row):
                    self.states[name] = row.state
                    self.reasons[name] = row.reason

    @property
    def sweep_id(self) -> str:
        return self.bus.sweep_id

    @property
    def stopping(self) -> bool:
        return self._stop_state is not None

    # ------------------------------------------------------------------ the journal
    def open_in_journal(self) -> None:
        """Queue the pipeline's own row (new: ``created``; resumed: ours again, running)."""
        if self._opened:
            return
        self._opened = True
        s = self.settings
        with self.journal.together(self.sweep_id):
            if self.resume is not None:
                self.journal.reopen_sweep(
                    self.sweep_id,
                    pid=os.getpid(),
                    total=len(self.plan.nodes),
                    concurrency=s.concurrency,
                    component_hash="",
                    via_daemon=s.by_daemon or None,
                )
                self._sweep_to(_S.RUNNING, "resumed")
                return
            op = self.plan.spec.operation
            self.journal.add_sweep(
                self.sweep_id,
                name=self.name,
                description=s.description or op.description,
                tags=list(s.tags) or list(op.tags or []),
                spec_path=s.spec_path,
                kind="dag",
                total=len(self.plan.nodes),
                concurrency=s.concurrency,
                pid=os.getpid(),
                seed=None,
                overrides=dict(s.overrides),
                daemon_spec=s.spec_text,
            )

    async def commit_start(self, refused: str = "not started") -> None:
        if not self._committed:
            self.open_in_journal()
            await commit_start(self.journal, self.sweep_id, refused)
            self._committed = True

    def _sweep_to(self, to: SweepState, reason: str | None) -> None:
        self.state = move_sweep(self.journal, self.sweep_id, self.state, to, reason)
        self.reason = reason

    # ------------------------------------------------------------------ stopping
    def request_stop(
        self,
        reason: str,
        grace: float | None = None,
        final_state: SweepState = SweepState.STOPPED,
    ) -> None:
        """Start no new node; stop the running ones (their runs get SIGTERM, then SIGKILL
        after ``grace``). Idempotent; a second call with ``grace=0`` kills at once."""
        if self._stop_state is None:
            self._stop_state = final_state
            self.reason = reason
            if self.state is _S.RUNNING:
                self._sweep_to(_S.STOPPING, reason)
        for controller in list(self.running.values()):
            if controller is not None:
                controller.request_stop(reason, grace=grace)
        if self._tg is not None:
            self._advance()

    # ------------------------------------------------------------------ the pipeline
    async def run(self) -> SweepResult:
        """Run the pipeline to its end (its start committed to the journal first)."""
        await self.commit_start()
        try:
            return await self._drive()
        except Exception as exc:  # a bug or a broken journal: never left "running"
            reason = failure_reason(exc)
            for controller in list(self.running.values()):
                if controller is not None:
                    controller.request_stop(reason, grace=0)
            self._stop_state, self.reason = _S.FAILED, reason
            with contextlib.suppress(Exception):
                return await self._finish()
            return SweepResult(self.sweep_id, _S.FAILED, reason, [])

    async def _drive(self) -> SweepResult:
        if self.state is _S.CREATED:
            self._sweep_to(_S.RUNNING, None)
        await self.bus.emit(
            SweepStarted,
            name=self.name,
            total=len(self.plan.nodes),
            concurrency=self.settings.concurrency,
        )
        async with anyio.create_task_group() as timers:
            if self.settings.max_time is not None:
                timers.start_soon(self._budget, self.settings.max_time)
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._advance()  # a stop asked for before this leaves every node stopped
            self._tg = None
            timers.cancel_scope.cancel()
        return await self._finish()

    async def _budget(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        self.request_stop(f"the time budget of {seconds:g}s is spent")

    async def _finish(self) -> SweepResult:
        if self._stop_state is not None:
            final, reason = self._stop_state, self.reason
        else:
            final, reason = dag_ending(self.states)
        counts: dict[str, int] = {}
        for state in self.states.values():
            counts[state] = counts.get(state, 0) + 1
        finished = self.bus.stamp(SweepFinished, state=final, reason=reason, counts=counts)
        self._sweep_to(final, reason)
        await self.bus.publish(finished)
        spec = self.plan.spec
        hooks = spec.operation.hooks or spec.component.hooks
        await self._hooks(hooks, _HookOf(self.sweep_id, self.name, "dag"), final.value, reason)
        await self.journal.flush()
        lost = self._journal_error or self.journal.lost(self.sweep_id)
        return SweepResult(self.sweep_id, final, reason, self.all_runs(), lost)

    def all_runs(self) -> list[RunRecord]:
        """Every node's runs (the newest of each configuration), in the plan's order."""
        runs: list[RunRecord] = []
        for name in self.plan.order:
            if name in self.sweeps:
                rows = self.journal.latest_runs(self.sweeps[name])
                runs += records_from_rows(self.journal, rows)
        return runs

    # ------------------------------------------------------------------ deciding
    def _advance(self) -> None:
        """Decide every waiting node whose upstream nodes allow it, until nothing changes."""
        changed = True
        while changed:
            changed = False
            for name in self.plan.order:
                if name in self.states or name in self.running:
                    continue
                if self._decide(name):
                    changed = True

    def _decide(self, name: str) -> bool:
        """Start, skip or give up on node ``name``; False while it waits."""
        assert self._tg is not None
        if self.stopping:
            self._unrun(name, _S.STOPPED, self.reason)
            return True
        node = self.plan.nodes[name]
        upstream = {u: self.states.get(u) for u in node.upstream}
        decision = trigger_decision(node.trigger, upstream, node.skip_on_upstream_skip)
        if decision == "wait":
            return False
        if decision == "skip":
            skipped = ", ".join(u for u, s in upstream.items() if s == _S.SKIPPED.value)
            self._unrun(name, _S.SKIPPED, f"upstream node skipped ({skipped}); skipOnUpstreamSkip")
        elif decision == "upstream_failed":
            ended = ", ".join(f"{u} {s}" for u, s in upstream.items() if s is not None)
            self._unrun(name, _S.UPSTREAM_FAILED, f"trigger {node.trigger} cannot be met ({ended})")
        else:
            self.running[name] = None
            self._tg.start_soon(self._run_node, name)
        return True

    def _unrun(self, name: str, state: SweepState, reason: str | None) -> None:
        """Journal node ``name`` as not run (``state``, with ``reason``): a row of its own,
        or its earlier row moved where the table allows it."""
        self.states[name], self.reasons[name] = state.value, reason
        self._say(f"node {name} {state.value}" + (f" ({reason})" if reason else ""))
        earlier = self.resume.nodes.get(name) if self.resume is not None else None
        if earlier is None:
            self._journal_unrun(name, state, reason)
        elif state in SWEEP_ALLOWED[SweepState(earlier.state)]:
            move_sweep(self.journal, earlier.id, SweepState(earlier.state), state, reason)
        elif earlier.state != state.value:  # it ran before; left as it ended (a stop came)
            self.states[name], self.reasons[name] = earlier.state, earlier.reason
        self._check_failures()

    def _journal_unrun(self, name: str, state: SweepState, reason: str | None) -> None:
        """A row for node ``name``, which never ran: its sweep, in ``state``."""
        sweep_id = uuid.uuid4().hex
        self.sweeps[name] = sweep_id
        node = self.plan.nodes[name]
        self.journal.add_sweep(
            sweep_id,
            name=name,
            description=node.operation.description,
            tags=list(node.operation.tags or []),
            spec_path=self.settings.spec_path,
            kind=_kind(node.operation),
            total=0,
            concurrency=0,
            pid=os.getpid(),
            seed=None,
            parent_id=self.sweep_id,
            node=name,
        )
        move_sweep(self.journal, sweep_id, _S.CREATED, state, reason)

    # ------------------------------------------------------------------ one node
    async def _run_node(self, name: str) -> None:
        """Compile node ``name`` now, run its sweep, then its hooks; decide what follows."""
        try:
            controller = await self._start_node(name)
        except Exception as exc:  # this node cannot start (a value it was given, a bug)
            self.running.pop(name, None)
            reason = str(exc) if isinstance(exc, SpecError | NotFoundError) else None
            self._unrun(name, _S.FAILED, reason or failure_reason(exc))
            self._advance()
            return
        if controller is None:  # conditions false: skipped
            self.running.pop(name, None)
            self._advance()
            return
        self.running[name] = controller
        self.sweeps[name] = controller.sweep_id
        if self.stopping:
            controller.request_stop(self.reason or "stopped")
        self._say(f"node {name} started: sweep {controller.sweep_id[:12]}, {_runs(controller)}")
        try:
            async with anyio.create_task_group() as watch:
                for observe in self.node_observers:
                    observe(controller.bus, watch)
                if self._early.metrics or self.err is not None:
                    subscription = controller.bus.subscribe(
                        {RunStateChanged}, accept=lambda e: getattr(e, "state", None) in TERMINAL
                    )
                    watch.start_soon(self._watch_runs, name, subscription)
                try:
                    result = await controller.run()
                finally:
                    with anyio.CancelScope(shield=True):
                        await controller.bus.close()
        finally:
            self.running.pop(name, None)
        if result.journal_error is not None:
            self._journal_error = self._journal_error or result.journal_error
        self.states[name], self.reasons[name] = result.state.value, result.reason
        self._upstream.pop(name, None)
        why = f" ({result.reason})" if result.reason else ""
        self._say(f"node {name} {result.state.value}{why}")
        up = self._upstream_of(name)
        node = self.plan.nodes[name]
        await self._hooks(
            node.operation.hooks or node.component.hooks,
            _HookOf(
                controller.sweep_id,
                name,
                "matrix" if node.is_sweep else "job",
                f"{node.where}.hooks",
            ),
            result.state.value,
            result.reason,
            up,
        )
        self._check_failures()
        self._advance()

    async def _start_node(self, name: str) -> SweepController | None:
        """The node's sweep, compiled from its upstream nodes' values now; None when its
        conditions are false (then it is journaled ``skipped``)."""
        from orchestrator.engine.build import build_sweep
        from orchestrator.spec import compile_plan
        from orchestrator.spec.dag import condition_holds, node_spec
        from orchestrator.store.layout import run_paths

        await self.journal.flush()  # the upstream nodes' outputs, read back from the journal
        upstream = self._all_upstream()
        if not condition_holds(self.plan, name, upstream):
            self._unrun(name, _S.SKIPPED, "conditions are false")
            return None
        joined = self._joins(name)
        loaded = node_spec(self.plan, name, upstream, joined)
        self._cache_on(loaded)
        settings = self._node_settings(name, loaded)
        earlier = self.resume.nodes.get(name) if self.resume is not None else None
        paths = run_paths(self.settings.home)
        seed = earlier.seed if earlier is not None else None
        plan = compile_plan(loaded, {}, paths=paths, name=name, seed=seed)
        resume = self._node_resume(earlier, plan) if earlier is not None else None
        settings = _with_concurrency(settings, plan.concurrency or self.settings.concurrency)
        executor = self.executor if self.executor_for is None else self.executor_for(plan.request)
        return build_sweep(
            plan,
            settings,
            journal=self.journal,
            plugins=self.plugins,
            executor=executor,
            resume=resume,
            shared_slots=self.node_slots,
            resources=self.resources,
        )

    def _node_resume(self, earlier: SweepRow, plan: Plan) -> Resume:
        """How node sweep ``earlier`` continues: its runs that succeeded are kept; under
        ``rerun``, only its runs in the chosen states run again (as a sweep's resume)."""
        assert self.resume is not None
        changed = earlier.component_hash and plan.component_hash != earlier.component_hash
        if changed and not self.resume.force:
            raise SpecError(
                f"the component of node {earlier.node!r} changed since it ran; pass --force "
                "to resume anyway, matching configurations by their params"
            )
        previous = records_from_rows(self.journal, self.journal.latest_runs(earlier.id))
        only_states = self.resume.only_states
        only = None
        if only_states is not None and earlier.state in only_states:
            only = {r.spec.params_hash for r in previous if r.state.value in only_states}
        return Resume(earlier.id, previous, only)

    def _node_settings(self, name: str, loaded: LoadedSpec) -> SweepSettings:
        from orchestrator.engine.build import SweepSettings

        s, op = self.settings, loaded.operation
        return SweepSettings(
            home=s.home,
            spec_path=s.spec_path,
            concurrency=s.concurrency,
            grace=s.grace,
            name=name,
            description=op.description,
            tags=tuple(op.tags or ()),
            priority=s.priority,
            spec_text=s.spec_text,
            by_daemon=s.by_daemon,
            keep_finished=s.keep_finished,
            parent_id=self.sweep_id,
            node=name,
        )

    def _cache_on(self, loaded: LoadedSpec) -> None:
        """The cache is on inside pipelines unless the node says otherwise (Polyaxon's rule);
        ``--cache BOOL`` / ``--nocache`` decide for every node."""
        op = loaded.operation
        disable = op.cache.disable if op.cache is not None else None
        if self.cache is not None:
            disable = not self.cache
        elif disable is None:
            disable = False
        op.cache = msgspec.structs.replace(op.cache or m.Cache(), disable=disable)

    def _joins(self, name: str) -> dict[str, m.Param] | None:
        """Node ``name``'s ``joins`` resolved over the runs of the pipeline's finished nodes
        (a query's ``name`` is the node's)."""
        from orchestrator.store.join_query import resolve_joins

        joins = self.plan.nodes[name].operation.joins
        if not joins:
            return None
        finished = {
            sweep: node
            for node, sweep in self.sweeps.items()
            if node in self.states and node in self.plan.nodes
        }
        components = {
            sweep: self.plan.nodes[node].component.name or node for sweep, node in finished.items()
        }
        return resolve_joins(
            self.journal,
            list(finished),
            joins,
            finished,
            where=f"run.operations[{name}].joins",
            components=components,
        )

    # ------------------------------------------------------------------ upstream values
    def _all_upstream(self) -> dict[str, Upstream]:
        return {name: self._upstream_of(name) for name in self.states}

    def _upstream_of(self, name: str) -> Upstream:
        """What the journal holds of finished node ``name``: its run's params and outputs (a
        1-run node), and its state."""
        from orchestrator.spec.dag import Upstream

        if name not in self._upstream:
            inputs: dict[str, Any] = {}
            outputs: dict[str, Any] = {}
            run_uuid = None
            sweep_id = self.sweeps.get(name)
            if sweep_id is not None and not self.plan.nodes[name].is_sweep:
                runs = self.journal.latest_runs(sweep_id)
                if len(runs) == 1:
                    run_uuid, inputs = runs[0].id, dict(runs[0].params)
                    outputs = self.journal.outputs_of([run_uuid]).get(run_uuid, {})
            self._upstream[name] = Upstream(name, self.states[name], inputs, outputs, run_uuid)
        return self._upstream[name]

    # ------------------------------------------------------------------ watching
    async def _watch_runs(self, name: str, subscription: Subscription) -> None:
        """Each finished run of node ``name``: a line when it failed, and the metric rules
        of ``dag.earlyStopping`` checked against its outputs."""
        async with subscription.receive:
            async for event in subscription.receive:
                subscription.handled()
                assert isinstance(event, RunStateChanged)
                if event.state.value == "failed":
                    why = f": {event.reason}" if event.reason else ""
                    self._say(f"node {name} run {event.index} failed{why}")
                reached = self._early.metric(event.outputs or {})
                if reached is not None and not self.stopping:
                    # As a matrix's target (and Polyaxon's docs): the pipeline succeeded,
                    # what still runs or waits is stopped.
                    self._say(reached)
                    self.request_stop(reached, final_state=_S.SUCCEEDED)

    def _check_failures(self) -> None:
        reached = self._early.failure(self.states, len(self.plan.nodes))
        if reached is not None and not self.stopping:
            self._say(reached)
            self.request_stop(reached)

    def _say(self, line: str) -> None:
        if self.err is not None:
            self.err.write(f"dag {self.sweep_id[:12]}: {line}\n")
            self.err.flush()

    # ------------------------------------------------------------------ hooks
    async def _hooks(
        self,
        hooks: Sequence[m.Hook] | None,
        of: _HookOf,
        status: str,
        reason: str | None,
        upstream: Upstream | None = None,
    ) -> None:
        """The hooks of a node, or of the pipeline, once it ended: they never change how it
        ended (a hook's failure is reported and journaled as its own sweep)."""
        if not hooks:
            return
        from orchestrator.engine.op_hooks import HookContext, run_hooks

        context = HookContext(
            sweep_id=of.sweep_id,
            name=of.name,
            status=status,
            inputs=upstream.inputs if upstream is not None else dict(self.plan.inputs),
            outputs=upstream.outputs if upstream is not None else {},
            reason=reason,
            base_dir=self.plan.spec.base_dir,
            source=self.plan.source or self.plan.spec.source,
            kind=of.kind,
        )
        await run_hooks(
            hooks,
            context,
            home=self.settings.home,
            journal=self.journal,
            executor=self.executor,
            grace=self.settings.grace,
            err=self.err,
            where=of.where,
        )


class _NodeSlots(PrioritySlots):
    """A run slot of a pipeline's node inside a daemon: one of the pipeline's own slots
    (``dag.concurrency``), then one of the daemon's (``--max-runs``, by priority). The
    pipeline's first, so a run held back by its pipeline's bound holds none of the daemon's
    slots; a run cancelled between the two gives back the first."""

    def __init__(self, own: PrioritySlots, daemon: PrioritySlots) -> None:
        super().__init__(own.total)
        self.own, self.daemon = own, daemon

    async def acquire(self, priority: int = 0) -> None:
        await self.own.acquire(priority)
        try:
            await self.daemon.acquire(priority)
        except BaseException:
            self.own.release()
            raise

    def release(self) -> None:
        self.daemon.release()
        self.own.release()

    @property
    def waiting(self) -> int:
        return self.own.waiting + self.daemon.waiting


@dataclass(frozen=True)
class _HookOf:
    """Whose hooks run: its sweep, name, Polyaxon kind, and where its hooks are written."""

    sweep_id: str
    name: str | None
    kind: str
    where: str = "hooks"


def _kind(op: m.Operation) -> str:
    """A node sweep's kind: its matrix's, else ``single``."""
    return str(op.matrix.__struct_config__.tag) if op.matrix is not None else "single"


def _runs(controller: SweepController) -> str:
    from orchestrator.wording import plural

    return plural(controller.total, "run") if controller.total else "runs decided as it goes"


def _with_concurrency(settings: SweepSettings, concurrency: int) -> SweepSettings:
    import dataclasses

    return dataclasses.replace(settings, concurrency=concurrency)
