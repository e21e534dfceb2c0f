"""The sweep controller: pulls runs from the lazy expansion as slots free, and drives each one.

A :class:`anyio.CapacityLimiter` bounds how many runs are alive; the controller renders the
next run only once a slot is free, so a 10^6-point grid never sits in memory. Every state change
goes through :meth:`SweepController.transition`, which checks the table, journals, then
publishes. Stopping (Ctrl-C, SIGTERM, a plugin) starts no new runs and stops the running ones.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec

from orchestrator.engine.bus import EventBus, Subscription
from orchestrator.engine.context import PluginContext
from orchestrator.engine.events import (
    LogLine,
    MetricReported,
    RunCreated,
    RunStateChanged,
    SweepFinished,
    SweepStarted,
    SweepStopping,
)
from orchestrator.engine.slots import PrioritySlots
from orchestrator.engine.states import (
    SWEEP_ALLOWED,
    TERMINAL,
    InvalidTransition,
    RunState,
    SweepState,
    check_transition,
)
from orchestrator.exceptions import SpecError
from orchestrator.executors.base import Executor, Job, Outcome, StopRequest
from orchestrator.hooks import Defer, Skip, UseCached
from orchestrator.plugin_host import PluginHost
from orchestrator.spec.resolve import Plan, RunSpec
from orchestrator.store.journal import Journal
from orchestrator.store.layout import RunLayout

__all__ = ["RunRecord", "SweepController", "SweepResult"]

EVENT_TYPES = (
    SweepStarted,
    RunCreated,
    RunStateChanged,
    LogLine,
    MetricReported,
    SweepStopping,
    SweepFinished,
)
#: Stderr lines kept per run to show when it fails.
STDERR_TAIL = 20


@dataclass
class RunRecord:
    id: str
    index: int
    spec: RunSpec
    state: RunState = RunState.CREATED
    reason: str | None = None
    exit_code: int | None = None
    attempt: int = 1
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL))
    stop: StopRequest | None = None
    #: The run whose results a cache hit reused.
    cached_from: str | None = None
    #: Its ``termination.timeout`` expired (it ends failed, reason ``timeout``).
    timed_out: bool = False

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at


class OpenMapping:
    """Configurations added while a sweep runs (the daemon's ask/tell), until it is closed."""

    def __init__(self, next_index: int) -> None:
        self.next_index = next_index
        self.closed = False
        self._pending: list[dict[str, Any]] = []
        self._wake = anyio.Event()

    def add(self, values: list[dict[str, Any]]) -> list[int]:
        indexes = list(range(self.next_index, self.next_index + len(values)))
        self.next_index += len(values)
        self._pending.extend(values)
        self._wake.set()
        return indexes

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next(self) -> dict[str, Any] | None:
        while not self._pending:
            if self.closed:
                return None
            self._wake = anyio.Event()
            await self._wake.wait()
        return self._pending.pop(0)


@dataclass(frozen=True)
class Limits:
    """``termination`` (per run; the operation's fields override the component's) and the
    sweep's time budget."""

    timeout: float | None = None
    max_retries: int = 0
    ttl: float | None = None
    max_time: float | None = None

    @classmethod
    def of(cls, plan: Plan, max_time: float | None = None) -> Limits:
        op, comp = plan.spec.operation.termination, plan.spec.component.termination

        def pick(name: str) -> Any:
            for section in (op, comp):
                value = getattr(section, name, None) if section is not None else None
                if value is not None:
                    return value
            return None

        return cls(pick("timeout"), pick("max_retries") or 0, pick("ttl"), max_time)


@dataclass
class Resume:
    """Continue an existing sweep: which configurations to leave alone, which to run."""

    sweep_id: str
    #: The newest run of each configuration already journaled.
    previous: list[RunRecord]
    #: Run only configurations whose params hash is here (``rerun --failed``); None: all.
    only: set[str] | None = None

    @property
    def succeeded(self) -> set[str]:
        return {r.spec.params_hash for r in self.previous if r.state is RunState.SUCCEEDED}


@dataclass
class SweepResult:
    sweep_id: str
    state: SweepState
    reason: str | None
    runs: list[RunRecord]


class _Sink:
    """Receives one run's output lines: metrics, stderr tail, LogLine events."""

    def __init__(self, controller: SweepController, run: RunRecord) -> None:
        self.controller = controller
        self.run = run
        self.want_lines = controller.bus.wants(LogLine)

    async def line(self, stream: str, text: str) -> None:
        c = self.controller
        if stream == "stderr":
            self.run.stderr_tail.append(text)
        elif text.startswith("{") and '"metrics"' in text:
            await c.metric_line(self.run, text)
        if self.want_lines:
            await c.bus.publish(
                LogLine(
                    sweep_id=c.sweep_id,
                    seq=c.bus.next_seq(),
                    ts=time.time(),
                    run_id=self.run.id,
                    index=self.run.index,
                    stream=stream,
                    line=text,
                )
            )


def _copy_logs(source: RunLayout, target: RunLayout) -> None:
    os.makedirs(target.outputs, exist_ok=True)
    for src, dst in ((source.stdout, target.stdout), (source.stderr, target.stderr)):
        if src.exists():
            shutil.copyfile(src, dst)
        else:
            dst.touch()


class _MetricLine(msgspec.Struct):
    metrics: dict[str, float]
    step: int | None = None


_decode_metrics = msgspec.json.Decoder(_MetricLine).decode


class SweepController:
    def __init__(
        self,
        plan: Plan,
        *,
        journal: Journal,
        executor: Executor,
        bus: EventBus,
        concurrency: int,
        grace: float,
        home: Path,
        spec_path: str,
        name: str | None = None,
        description: str | None = None,
        tags: Sequence[str] = (),
        overrides: dict[str, str] | None = None,
        resume: Resume | None = None,
        plugins: PluginHost | None = None,
        max_time: float | None = None,
        shared_slots: PrioritySlots | None = None,
        priority: int = 0,
        open_mapping: OpenMapping | None = None,
        daemon_spec: tuple[str, str] | None = None,
    ) -> None:
        self.plan = plan
        self.journal = journal
        self.executor = executor
        self.bus = bus
        self.sweep_id = bus.sweep_id
        self.concurrency = concurrency
        self.grace = grace
        self.home = home
        self.spec_path = spec_path
        self.name = name or plan.spec.operation.name or plan.spec.component.name
        self.description = description or plan.spec.operation.description
        self.tags = list(tags) or list(plan.spec.operation.tags or [])
        self.state = SweepState.CREATED
        self.reason: str | None = None
        self.runs: list[RunRecord] = []
        #: Every run known to the sweep by id (this invocation's and a resumed one's earlier).
        self.by_id: dict[str, RunRecord] = {}
        self.active: dict[str, RunRecord] = {}
        self._stop_state: SweepState | None = None
        #: Set when a run could not even be rendered: the sweep cannot go on.
        self._feed_error: str | None = None
        self._feed_scope: anyio.CancelScope | None = None
        self._outputs = {io.name for io in plan.ios if io.is_output}
        self._base_env = {"PYTHONUNBUFFERED": "1", **os.environ}
        self.overrides = dict(overrides or {})
        self.limits = Limits.of(plan, max_time)
        #: A daemon's limit on runs across all its sweeps (by priority, then arrival).
        self.shared_slots = shared_slots
        self.priority = priority
        #: When set, the sweep waits for more configurations after its mapping runs out.
        self.open_mapping = open_mapping
        self.daemon_spec = daemon_spec
        self._background: anyio.abc.TaskGroup | None = None
        self._timers: list[anyio.CancelScope] = []
        self.plugins = plugins
        self.ctx = PluginContext(self)
        if plugins is not None:
            plugins.on_strict_failure = lambda reason: self.request_stop(
                reason, final_state=SweepState.FAILED
            )
        self.resume = resume
        self._skip: set[str] = resume.succeeded if resume is not None else set()
        if resume is not None:
            self.by_id.update((r.id, r) for r in resume.previous)
        self._attempts = {r.spec.params_hash: r.attempt for r in resume.previous} if resume else {}

    # ------------------------------------------------------------------ states
    async def transition(
        self,
        run: RunRecord,
        to: RunState,
        reason: str | None = None,
        exit_code: int | None = None,
        pid: int | None = None,
        stderr_tail: list[str] | None = None,
    ) -> None:
        """The only place a run's state changes: check, journal, then publish."""
        previous = run.state
        check_transition(previous, to)
        run.state, run.reason = to, reason
        if exit_code is not None:
            run.exit_code = exit_code
        now = time.time()
        started, finished = to is RunState.RUNNING, to in TERMINAL
        if started:
            run.started_at = now
        elif finished:
            run.finished_at = now
        self.journal.record_transition(
            self.sweep_id,
            run.id,
            previous.value,
            to.value,
            reason,
            exit_code,
            run.attempt,
            pid,
            started=started,
            finished=finished,
        )
        await self.bus.publish(
            RunStateChanged(
                sweep_id=self.sweep_id,
                seq=self.bus.next_seq(),
                ts=now,
                run_id=run.id,
                index=run.index,
                previous=previous.value,
                state=to.value,
                reason=reason,
                exit_code=exit_code,
                stderr_tail=stderr_tail,
                outputs=dict(run.outputs) if to in TERMINAL else None,
            )
        )

    def _sweep_to(self, to: SweepState, reason: str | None) -> None:
        if to not in SWEEP_ALLOWED[self.state]:
            raise InvalidTransition(f"sweep cannot go from {self.state} to {to}")
        self.state, self.reason = to, reason
        self.journal.set_sweep_state(
            self.sweep_id,
            to.value,
            reason,
            finished=to in {SweepState.SUCCEEDED, SweepState.FAILED, SweepState.STOPPED},
        )

    # ------------------------------------------------------------------ stopping
    def request_stop(
        self,
        reason: str,
        *,
        grace: float | None = None,
        final_state: SweepState = SweepState.STOPPED,
    ) -> None:
        """Start no new runs; stop running ones (SIGTERM, grace, SIGKILL). Idempotent;
        a second call with ``grace=0`` kills at once."""
        if self._stop_state is None:
            self._stop_state = final_state
            self.reason = reason
            if self.state is SweepState.RUNNING:
                self._sweep_to(SweepState.STOPPING, reason)
            event = SweepStopping(
                sweep_id=self.sweep_id,
                seq=self.bus.next_seq(),
                ts=time.time(),
                reason=reason,
                final_state=final_state.value,
            )
            full = self.bus.publish_nowait(event)
            if full and self._background is not None:
                # Those subscribers' streams are full: deliver to them, in order, later.
                self._background.start_soon(self.bus.send_to, event, full)
        if self._feed_scope is not None:
            self._feed_scope.cancel()
        wait = self.grace if grace is None else grace
        for run in list(self.active.values()):
            if run.stop is not None:
                run.stop.request(reason, wait)

    @property
    def stopping(self) -> bool:
        return self._stop_state is not None

    # ------------------------------------------------------------------ metrics
    async def metric_line(self, run: RunRecord, text: str) -> None:
        try:
            record = _decode_metrics(text)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        if not record.metrics:
            return
        run.metrics.update(record.metrics)
        for name, value in record.metrics.items():
            if name in self._outputs:
                run.outputs[name] = value
        self.journal.add_metrics(run.id, record.step, record.metrics)
        await self.bus.publish(
            MetricReported(
                sweep_id=self.sweep_id,
                seq=self.bus.next_seq(),
                ts=time.time(),
                run_id=run.id,
                index=run.index,
                step=record.step,
                values=record.metrics,
            )
        )

    # ------------------------------------------------------------------ the sweep
    async def run(self) -> SweepResult:
        plan = self.plan
        seed = plan.expansion.seed if plan.expansion is not None else None
        kind = plan.expansion.kind if plan.expansion is not None else "single"
        if self.resume is None:
            self.journal.add_sweep(
                self.sweep_id,
                name=self.name,
                description=self.description,
                tags=self.tags,
                spec_path=self.spec_path,
                kind=kind,
                total=len(plan),
                concurrency=self.concurrency,
                pid=os.getpid(),
                seed=seed,
                overrides=self.overrides,
                component_hash=plan.component_hash,
                daemon_spec=self.daemon_spec,
            )
            self._sweep_to(SweepState.RUNNING, None)
        else:
            self.journal.reopen_sweep(
                self.sweep_id,
                pid=os.getpid(),
                total=len(plan),
                concurrency=self.concurrency,
                component_hash=plan.component_hash,
            )
            self._sweep_to(SweepState.RUNNING, "resumed")
        async with anyio.create_task_group() as observers:
            self._background = observers
            subscriptions = self._start_observers(observers)
            if self.limits.max_time is not None:
                self._after(self.limits.max_time, self._budget_spent)
            await self._publish_started(plan)
            async with anyio.create_task_group() as tg:
                with anyio.CancelScope() as scope:
                    self._feed_scope = scope
                    if self.stopping:
                        scope.cancel()
                    await self._feed(tg)
            # Plugins see every run's end before the sweep's state is decided (a strict
            # failure or an early-stopping target reached by the last run counts).
            for subscription in subscriptions:
                await subscription.wait_caught_up()
            result = await self._finish_sweep()
            for subscription in subscriptions:
                await subscription.send.aclose()
            for timer in self._timers:
                timer.cancel()
        self._background = None
        return result

    def _after(self, seconds: float, action: Any, *args: Any) -> None:
        """Call ``action(*args)`` in ``seconds`` unless the sweep ends first."""
        scope = anyio.CancelScope()
        self._timers.append(scope)

        async def wait() -> None:
            with scope:
                await anyio.sleep(seconds)
                await action(*args)

        assert self._background is not None
        self._background.start_soon(wait)

    async def _budget_spent(self) -> None:
        self.request_stop(f"the time budget of {self.limits.max_time:g}s is spent")

    def _start_observers(self, tg: anyio.abc.TaskGroup) -> list[Subscription]:
        if self.plugins is None:
            return []
        subscriptions = []
        for name, types in self.plugins.observer_plan(EVENT_TYPES).items():
            subscription = self.bus.subscribe(types)
            subscriptions.append(subscription)
            tg.start_soon(self.plugins.observe, name, subscription, self.ctx)
        return subscriptions

    async def _publish_started(self, plan: Plan) -> None:
        await self.bus.publish(
            SweepStarted(
                sweep_id=self.sweep_id,
                seq=self.bus.next_seq(),
                ts=time.time(),
                name=self.name,
                total=len(plan),
                concurrency=self.concurrency,
            )
        )

    async def _finish_sweep(self) -> SweepResult:
        final, reason = self._final_state()
        self._sweep_to(final, reason)
        counts: dict[str, int] = {}
        for run in self.all_runs():
            counts[run.state.value] = counts.get(run.state.value, 0) + 1
        await self.bus.publish(
            SweepFinished(
                sweep_id=self.sweep_id,
                seq=self.bus.next_seq(),
                ts=time.time(),
                state=final.value,
                reason=reason,
                counts=counts,
            )
        )
        await self.journal.flush()
        return SweepResult(self.sweep_id, final, reason, self.all_runs())

    def all_runs(self) -> list[RunRecord]:
        """Every configuration's newest run: earlier invocations' and this one's."""
        if self.resume is None:
            return list(self.runs)
        rerun = {r.spec.params_hash for r in self.runs}
        kept = [r for r in self.resume.previous if r.spec.params_hash not in rerun]
        return sorted(kept + self.runs, key=lambda r: (r.index, r.created_at))

    def _final_state(self) -> tuple[SweepState, str | None]:
        if self._stop_state is not None:
            return self._stop_state, self.reason
        runs = self.all_runs()
        if self._feed_error is not None and not runs:
            return SweepState.FAILED, self._feed_error
        states = [r.state for r in runs]
        failed = sum(s is RunState.FAILED for s in states)
        if failed:
            return SweepState.FAILED, f"{failed} of {len(states)} runs failed"
        if states and all(s is RunState.STOPPED for s in states):
            return SweepState.STOPPED, "all runs were stopped"
        if self._feed_error is not None:
            return SweepState.FAILED, self._feed_error
        return SweepState.SUCCEEDED, None

    async def _feed(self, tg: anyio.abc.TaskGroup) -> None:
        limiter = anyio.CapacityLimiter(self.concurrency)
        suggestions = self.plan.suggestions()
        index = 0
        while True:
            token = object()
            await limiter.acquire_on_behalf_of(token)
            try:
                suggestion = next(suggestions, None)
                if suggestion is None and self.open_mapping is not None:
                    suggestion = await self.open_mapping.next()
                if suggestion is None or self.stopping:
                    limiter.release_on_behalf_of(token)
                    return
                spec = self.plan.render(index, suggestion, uuid.uuid4().hex)
                if not self._wanted(spec):
                    limiter.release_on_behalf_of(token)
                    index += 1
                    continue
            except SpecError as exc:
                limiter.release_on_behalf_of(token)
                self._feed_error = str(exc)
                return
            except BaseException:
                limiter.release_on_behalf_of(token)
                raise
            run = await self._create(spec)
            tg.start_soon(self._execute, run, limiter, token)
            index += 1

    def _wanted(self, spec: RunSpec) -> bool:
        if spec.params_hash in self._skip:
            return False
        only = self.resume.only if self.resume is not None else None
        return only is None or spec.params_hash in only

    async def _create(self, spec: RunSpec) -> RunRecord:
        attempt = self._attempts.get(spec.params_hash, 0) + 1
        run = RunRecord(id=spec.uuid, index=spec.index, spec=spec, attempt=attempt)
        self.runs.append(run)
        self.by_id[run.id] = run
        layout = RunLayout(self.home, run.id)
        self.journal.add_run(
            run.id,
            self.sweep_id,
            run.index,
            spec.config_hash,
            msgspec.json.encode(spec.params).decode(),
            msgspec.json.encode(spec.argv).decode(),
            str(layout.run_dir),
            spec.params_hash,
        )
        await self.bus.publish(
            RunCreated(
                sweep_id=self.sweep_id,
                seq=self.bus.next_seq(),
                ts=time.time(),
                run_id=run.id,
                index=run.index,
                params=spec.params,
                argv=spec.argv,
            )
        )
        return run

    def _job(self, run: RunRecord) -> Job:
        layout = RunLayout(self.home, run.id)
        spec = run.spec
        env = {**self._base_env, **spec.env}
        env["ORCHESTRATOR_RUN_ID"] = run.id
        env["ORCHESTRATOR_RUN_DIR"] = str(layout.run_dir)
        env["ORCHESTRATOR_OUTPUTS_PATH"] = str(layout.outputs)
        env["ORCHESTRATOR_SWEEP_ID"] = self.sweep_id
        cwd = Path(spec.working_dir) if spec.working_dir else self.plan.spec.base_dir
        return Job(run.id, run.index, list(spec.argv), env, cwd, layout, list(spec.init))

    async def _execute(self, run: RunRecord, limiter: anyio.CapacityLimiter, token: object) -> None:
        try:
            run.stop = StopRequest()
            self.active[run.id] = run
            await self.transition(run, RunState.QUEUED)
            if self.stopping:
                await self.transition(run, RunState.STOPPED, self.reason)
                return
            if await self._decided(run):
                return
            while True:
                if self.shared_slots is not None:
                    await self.shared_slots.acquire(self.priority)
                    if self.stopping:
                        self.shared_slots.release()
                        await self.transition(run, RunState.STOPPED, self.reason)
                        return
                try:
                    await self.transition(run, RunState.STARTING)
                    outcome = await self._attempt(run)
                finally:
                    if self.shared_slots is not None:
                        self.shared_slots.release()
                why = self._retry_reason(run, outcome)
                if why is None:
                    break
                await self.transition(run, RunState.RETRYING, why, exit_code=outcome.exit_code)
                run.attempt += 1
                run.stop = StopRequest()
                await self.transition(run, RunState.QUEUED)
                if self.stopping:
                    await self.transition(run, RunState.STOPPED, self.reason)
                    return
            await self._finish(run, outcome)
            if self.plugins is not None:
                await self.plugins.call_all("on_run_finished", run=run, ctx=self.ctx)
            if self.limits.ttl is not None:
                self._schedule_cleanup(run)
        finally:
            self.active.pop(run.id, None)
            limiter.release_on_behalf_of(token)

    async def _attempt(self, run: RunRecord) -> Outcome:
        """One execution, bounded by ``termination.timeout``."""
        assert run.stop is not None

        async def started(pid: int | None) -> None:
            await self.transition(run, RunState.RUNNING, pid=pid)

        if self.limits.timeout is None:  # the common case needs no watchdog task
            return await self.executor.execute(self._job(run), _Sink(self, run), run.stop, started)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._deadline, run, run.stop, self.limits.timeout)
            outcome = await self.executor.execute(
                self._job(run), _Sink(self, run), run.stop, started
            )
            tg.cancel_scope.cancel()
        return outcome

    async def _deadline(self, run: RunRecord, stop: StopRequest, seconds: float) -> None:
        await anyio.sleep(seconds)
        if not stop.is_requested:
            run.timed_out = True
            stop.request("timeout", self.grace)

    def _retry_reason(self, run: RunRecord, outcome: Outcome) -> str | None:
        """Why ``run`` should run again (``termination.maxRetries``), or None."""
        failed = outcome.error is not None or (outcome.exit_code not in (0, None))
        if outcome.stopped or run.timed_out or not failed or self.stopping:
            return None  # stopped, early-stopped and timed-out runs are not retried
        if run.attempt > self.limits.max_retries:
            return None
        detail = outcome.error or f"exit code {outcome.exit_code}"
        return f"{detail}; retry {run.attempt} of {self.limits.max_retries}"

    def _schedule_cleanup(self, run: RunRecord) -> None:
        """``termination.ttl``: the run's working files go after that many seconds; the
        journal keeps its entry. Pending removals survive the process (journaled)."""
        assert self.limits.ttl is not None
        layout = RunLayout(self.home, run.id)
        self.journal.add_cleanup(run.id, str(layout.artifacts), time.time() + self.limits.ttl)
        self._after(self.limits.ttl, self._cleanup, run.id, layout.artifacts)

    async def _cleanup(self, run_id: str, folder: Path) -> None:
        await anyio.to_thread.run_sync(shutil.rmtree, folder, True)
        self.journal.cleanup_done(run_id)

    async def _decided(self, run: RunRecord) -> bool:
        """Ask ``decide_before_run``; True when the run ended without executing."""
        if self.plugins is None or not self.plugins.implements("decide_before_run"):
            return False
        while True:
            decision = await self.plugins.call_first("decide_before_run", run=run, ctx=self.ctx)
            if not isinstance(decision, Defer):
                break
            await decision.until.wait()
            if self.stopping:
                await self.transition(run, RunState.STOPPED, self.reason)
                return True
        if isinstance(decision, UseCached):
            await self._use_cached(run, decision)
        elif isinstance(decision, Skip):
            await self.transition(run, RunState.SKIPPED, decision.reason)
        else:
            return False
        await self.plugins.call_all("on_run_finished", run=run, ctx=self.ctx)
        return True

    async def _use_cached(self, run: RunRecord, hit: UseCached) -> None:
        """End ``run`` succeeded with the outputs, metrics and logs of an earlier run."""
        await self.journal.flush()
        source = RunLayout(self.home, hit.source_run_id)
        target = RunLayout(self.home, run.id)
        await anyio.to_thread.run_sync(_copy_logs, source, target)
        self.journal.copy_metrics(hit.source_run_id, run.id)
        await self.journal.flush()
        run.metrics = self.journal.last_metrics([hit.source_run_id]).get(hit.source_run_id, {})
        run.outputs = dict(hit.outputs)
        for name, value in run.outputs.items():
            self.journal.set_output(run.id, name, value)
        run.cached_from = hit.source_run_id
        await self.transition(run, RunState.SUCCEEDED, hit.reason)

    async def _finish(self, run: RunRecord, outcome: Outcome) -> None:
        for name, value in run.outputs.items():
            self.journal.set_output(run.id, name, value)
        if outcome.stopped and run.timed_out:
            if run.state is RunState.RUNNING:
                await self.transition(run, RunState.STOPPING, "timeout")
            limit = self.limits.timeout
            await self.transition(
                run,
                RunState.FAILED,
                "timeout",
                exit_code=outcome.exit_code,
                stderr_tail=[f"(stopped after termination.timeout = {limit:g}s)"],
            )
        elif outcome.stopped:
            reason = run.stop.reason if run.stop else None
            if run.state is RunState.RUNNING:
                await self.transition(run, RunState.STOPPING, reason)
            await self.transition(run, RunState.STOPPED, reason, exit_code=outcome.exit_code)
        elif outcome.error is not None:
            await self.transition(
                run, RunState.FAILED, outcome.error, stderr_tail=list(run.stderr_tail) or None
            )
        elif outcome.exit_code == 0:
            await self.transition(run, RunState.SUCCEEDED, exit_code=0)
        else:
            code = outcome.exit_code
            reason = f"exit code {code}"
            if code is not None and code < 0:
                import signal

                try:
                    reason = f"killed by {signal.Signals(-code).name}"
                except ValueError:
                    reason = f"killed by signal {-code}"
            await self.transition(
                run,
                RunState.FAILED,
                reason,
                exit_code=code,
                stderr_tail=list(run.stderr_tail) or None,
            )
