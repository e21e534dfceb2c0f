"""The sweep controller: pulls runs from the lazy expansion as slots free, and drives each one.

A :class:`anyio.CapacityLimiter` bounds how many runs are alive; the controller renders the
next run only once a slot is free, so a 10^6-point grid never sits in memory. Every state change
goes through :mod:`orchestrator.engine.transitions` (checked against the table, journaled,
then published).
How a run or the sweep ends is decided by the pure functions of
:mod:`orchestrator.engine.outcome`. Stopping (Ctrl-C, SIGTERM, a plugin) starts no new runs and
stops the running ones. Controllers are built by :func:`orchestrator.engine.build.build_sweep`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import msgspec

from orchestrator.engine.bus import EventBus, Subscription
from orchestrator.engine.context import PluginContext
from orchestrator.engine.events import (
    RunCreated,
    SweepFinished,
    SweepStarted,
    SweepStopping,
)
from orchestrator.engine.feedback import Feedback
from orchestrator.engine.jobs import job_for, sweep_environment
from orchestrator.engine.open_mapping import OpenMapping
from orchestrator.engine.outcome import (
    failure_reason,
    retry_reason,
    run_ending,
    sweep_ending_counted,
)
from orchestrator.engine.output import RunOutput, adopt_cached, logged_metrics
from orchestrator.engine.plugin_host import PluginScope
from orchestrator.engine.records import JournalRuns, Limits, Resume, RunRecord, SweepResult
from orchestrator.engine.recovery import LOST, RECOVERED
from orchestrator.engine.resources import ResourcePool
from orchestrator.engine.slots import PrioritySlots, unless_stopped
from orchestrator.engine.states import SWEEP_TERMINAL, TERMINAL, RunState, SweepState
from orchestrator.engine.sweep_journal import commit_start, queue_start, watch_losses
from orchestrator.engine.timers import Timers
from orchestrator.engine.transitions import move_run, move_sweep
from orchestrator.exceptions import SearchError, SpecError
from orchestrator.executors.base import Executor, Outcome, StopRequest
from orchestrator.hooks import Defer, Skip, UseCached
from orchestrator.provenance import collect, known_at_once, redacted, secret_patterns
from orchestrator.search.base import DONE, Done, Observation, Past, Searcher, Suggestion, Wait
from orchestrator.search.expansion import ExpansionSearcher
from orchestrator.spec.resolve import Plan, RunSpec
from orchestrator.store.journal import Journal
from orchestrator.store.layout import RunLayout

if TYPE_CHECKING:
    from orchestrator.engine.build import SweepSettings

__all__ = ["SweepController", "new_run_id"]

#: Final states a run reaches by itself: a resumed adaptive search keeps what they told it
#: (a stopped run, or one lost with its orchestrator, is run again).
_ENDED_ON_ITS_OWN = frozenset(
    {RunState.SUCCEEDED.value, RunState.FAILED.value, RunState.SKIPPED.value}
)

#: Run ids: random version-4 UUIDs from a generator seeded once from the OS (and again in a
#: forked child), not a ``getrandom`` call per run.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


#: Threads that collect provenance, per event loop: sweeps started together share one look
#: at their code and wait for it in these (:mod:`orchestrator.provenance`); a daemon's burst
#: of sweeps must not take anyio's shared worker threads from everything else meanwhile.
_PROVENANCE_THREADS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter]
_PROVENANCE_THREADS = weakref.WeakKeyDictionary()


def _provenance_threads() -> anyio.CapacityLimiter:
    loop = asyncio.get_running_loop()  # the orchestrator runs on asyncio only
    limiter = _PROVENANCE_THREADS.get(loop)
    if limiter is None:
        limiter = _PROVENANCE_THREADS[loop] = anyio.CapacityLimiter(64)
    return limiter


def new_run_id() -> str:
    return uuid.UUID(int=_ids.getrandbits(128), version=4).hex


def _copy_tree(source: Path, target: Path) -> None:
    """``source``'s files into ``target`` (links copied as links, never followed); nothing
    when the earlier run wrote no outputs."""
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)


async def _taken(acquire: Awaitable[None]) -> bool:
    """True once ``acquire`` has taken its slot (what :func:`unless_stopped` tells from a
    stop's None)."""
    await acquire
    return True


class SweepController:
    def __init__(
        self,
        plan: Plan,
        settings: SweepSettings,
        *,
        journal: Journal,
        executor: Executor,
        bus: EventBus,
        plugins: PluginScope | None,
        resume: Resume | None,
        shared_slots: PrioritySlots | None,
        open_mapping: OpenMapping | None,
        resources: ResourcePool | None = None,
        searcher: Searcher | None = None,
        base_env: dict[str, str] | None = None,
    ) -> None:
        self.plan = plan
        self.settings = settings
        self.journal = journal
        self.executor = executor
        self.bus = bus
        self.plugins = plugins
        self.resume = resume
        #: A daemon's limit on runs across all its sweeps (by priority, then arrival).
        self.shared_slots = shared_slots
        #: When set, the sweep waits for more configurations after its mapping runs out.
        self.open_mapping = open_mapping
        #: What to run next (an adaptive matrix's searcher; grid, random and mapping walk
        #: their expansion, then an open mapping's additions).
        self.searcher: Searcher = searcher or ExpansionSearcher(
            plan.suggestions(), len(plan), open_mapping.next if open_mapping else None
        )
        #: An adaptive search journals each suggestion and is rebuilt from them on resume.
        self.adaptive = plan.expansion is not None and plan.expansion.adaptive
        #: Runs the sweep makes, as far as known before it starts (0: unknown).
        self._total = self.searcher.total or 0
        #: How results reach the searcher: as runs end, or in run order where the
        #: searcher's suggestions depend on which results came first and the file gives a
        #: seed (then the same seed gives the same runs).
        matrix = plan.spec.operation.matrix
        self.feedback = Feedback(
            self.searcher,
            ordered=getattr(self.searcher, "order_sensitive", False)
            and getattr(matrix, "seed", None) is not None,
            lag=settings.concurrency,
        )
        #: An adaptive sweep's run ids by index (a hyperband promotion resumes from one).
        self._run_at: dict[int, str] = {}
        #: The machine's GPUs, CPUs and memory (shared by a daemon's sweeps): runs that ask
        #: for some wait for them; None where nothing is asked (such runs are never held
        #: back; hiding the GPUs from them needs no booking).
        self.resources = None if plan.request.is_empty else resources
        #: The environment of a run that asks for nothing while the pool has GPUs: it sees
        #: none (as on Kubernetes, where a pod without ``nvidia.com/gpu`` gets no device).
        self._no_devices = (
            {"CUDA_VISIBLE_DEVICES": ""}
            if resources is not None and resources.inventory.gpus and not plan.request.gpu_milli
            else None
        )
        op = plan.spec.operation
        self.name = settings.name or op.name or plan.spec.component.name
        self.state = SweepState.CREATED
        self.reason: str | None = None
        self.runs: list[RunRecord] = []
        #: Every run known to the sweep by id (this invocation's and a resumed one's earlier).
        self.by_id: dict[str, RunRecord] = {}
        #: Runs created and not yet finished (a run cut short by an error stays until
        #: :meth:`_abandon` ends it).
        self.active: dict[str, RunRecord] = {}
        #: Runs created so far, and finished ones by final state (this invocation's).
        self._created = 0
        self._ended: Counter[RunState] = Counter()
        #: Finished runs leave memory (see :meth:`_let_go`).
        self._flat = False
        #: A resumed sweep's configurations run again in this invocation (params hashes).
        self._rerun: set[str] = set()
        self.limits = Limits.of(plan, settings.max_time)
        self.ctx = PluginContext(self)
        self._stop_state: SweepState | None = None
        #: Set when a run could not even be rendered: the sweep cannot go on.
        self._feed_error: str | None = None
        self._feed_scope: anyio.CancelScope | None = None
        self._outputs = frozenset(io.name for io in plan.ios if io.is_output)
        #: The environment every run starts from (see :func:`sweep_environment`).
        self._base_env = sweep_environment() if base_env is None else base_env
        #: Names whose values are never journaled (see :mod:`orchestrator.provenance`).
        self._secrets = secret_patterns(self._base_env)
        self._base_dir = plan.spec.base_dir
        self._background: anyio.abc.TaskGroup | None = None
        #: Set once this invocation's provenance is journaled (see :meth:`_record_provenance`).
        self._provenance: anyio.Event | None = None
        #: The observing plugins' subscriptions: they hear the sweep's end before it is final.
        self._observers: list[Subscription] = []
        self._timers: Timers | None = None
        #: :meth:`open_in_journal` has queued the sweep's start; :meth:`commit_start` has
        #: committed it.
        self._opened = False
        self._committed = False
        #: Why a write of this sweep was lost, once one was (the sweep then ends ``failed``).
        self._journal_error: str | None = None
        if resume is not None:
            self.by_id.update((r.id, r) for r in resume.previous)

    @property
    def total(self) -> int:
        """How many runs the sweep makes, as its searcher knows now (0: not known)."""
        return self.searcher.total or 0

    @property
    def sweep_id(self) -> str:
        return self.bus.sweep_id

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def grace(self) -> float:
        return self.settings.grace

    @property
    def concurrency(self) -> int:
        return self.settings.concurrency

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
        """Move a run (checked and journaled by :func:`move_run`), then announce it."""
        event = move_run(self.journal, self.bus, run, to, reason, exit_code, pid, stderr_tail)
        if to in TERMINAL:
            self._ended[to] += 1
        await self.bus.publish(event)

    # ------------------------------------------------------------------ what is kept
    def _let_go(self) -> None:
        """From now on finished runs leave memory (the sweep has more than
        ``keep_finished``): what is asked of all runs is counted, or read from the journal."""
        self._flat = True
        for run in self.runs:
            if run.state in TERMINAL and run.id not in self.active:
                self.by_id.pop(run.id, None)
        self.runs = []

    def state_counts(self) -> Counter[RunState]:
        """The newest run of each configuration, counted by state (earlier invocations'
        included), without reading every run."""
        if not self._flat:
            return Counter(r.state for r in self.all_runs())
        counts = self._ended + Counter(
            r.state for r in self.active.values() if r.state not in TERMINAL
        )
        if self.resume is not None:
            counts.update(
                r.state for r in self.resume.previous if r.spec.params_hash not in self._rerun
            )
        return counts

    def _sweep_to(self, to: SweepState, reason: str | None) -> None:
        self.state = move_sweep(self.journal, self.sweep_id, self.state, to, reason)
        self.reason = reason

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
            event = self.bus.stamp(SweepStopping, reason=reason, final_state=final_state)
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

    # ------------------------------------------------------------------ the sweep
    async def run(self) -> SweepResult:
        """Run the sweep to its end. Its start is committed to the journal first (if that
        fails: UnavailableError, and nothing runs); a write of it lost later fails it."""
        await self.commit_start()
        watch_losses(self.journal, self.sweep_id, self._journal_failed)
        try:
            return await self._drive()
        except Exception as exc:
            # A bug or a broken journal must not leave the sweep "running" for ever.
            return await self._abandon(failure_reason(exc))
        finally:
            self.journal.forget(self.sweep_id)

    async def _drive(self) -> SweepResult:
        if self.state is SweepState.CREATED:  # a resumed sweep is running already
            self._sweep_to(SweepState.RUNNING, None)
        async with anyio.create_task_group() as observers:
            self._background = observers
            self._provenance = anyio.Event()
            at = time.time()
            # Queued before the first run is created, so committed with it or before it.
            self.journal.add_provenance(self.sweep_id, known_at_once(self._base_env), at)
            observers.start_soon(self._record_provenance, at, self._provenance)
            self._timers = Timers(observers)
            self._observers = subscriptions = (
                await self.plugins.start_observers(self.bus, observers, self.ctx)
                if self.plugins
                else []
            )
            if self.limits.max_time is not None:
                self._timers.after(self.limits.max_time, self._budget_spent)
            await self.bus.emit(
                SweepStarted, name=self.name, total=self.total, concurrency=self.concurrency
            )
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
            await self._provenance.wait()  # journaled before the sweep's end
            result = await self._finish_sweep()
            for subscription in subscriptions:
                await subscription.send.aclose()
            self._timers.cancel()
        self._background, self._observers = None, []
        return result

    async def _record_provenance(self, at: float, done: anyio.Event) -> None:
        """Journal where this invocation runs (code, interpreter, packages, host...) before
        the sweep ends, in place of the part known at once (journaled ``at``, before this
        invocation's first run was created: its runs find it by that time). Collected in a
        thread (git, the installed distributions: tens of milliseconds) while the first runs
        start, not before them. What cannot be collected is said in the record (``error``):
        it never stops the sweep."""
        try:
            try:
                collected = await anyio.to_thread.run_sync(
                    collect, self._base_dir, self._base_env, limiter=_provenance_threads()
                )
                record = collected.as_dict()
            except Exception as exc:  # a broken distribution's metadata, an odd platform
                record = known_at_once(self._base_env)
                record["error"] = f"could not be collected: {failure_reason(exc)}"
            self.journal.add_provenance(self.sweep_id, record, at)
        finally:
            done.set()

    async def provenance_recorded(self) -> None:
        """Return once this invocation's provenance is journaled (or could not be)."""
        if self._provenance is not None:
            await self._provenance.wait()

    async def _abandon(self, reason: str) -> SweepResult:
        """End the sweep ``failed`` with ``reason`` after an unexpected error: every run not
        yet finished fails with it (their processes died with the task group)."""
        self._background, self._observers = None, []
        for run in list(self.active.values()):
            if run.state not in TERMINAL:
                with contextlib.suppress(Exception):  # the journal may be what broke
                    await self.transition(run, RunState.FAILED, reason)
            self._leave(run)
        self._stop_state = self._stop_state or SweepState.FAILED
        self.reason = reason if self._stop_state is SweepState.FAILED else self.reason
        with contextlib.suppress(Exception):
            return await self._finish_sweep()
        return SweepResult(self.sweep_id, SweepState.FAILED, reason, self._result_runs())

    def open_in_journal(self) -> None:
        """Queue the sweep's start in the journal, once (build_sweep calls it); whoever says
        the sweep is accepted awaits :meth:`commit_start` first, and :meth:`run` does too."""
        if not self._opened:
            self._opened = True
            queue_start(
                self.journal,
                self.sweep_id,
                self.plan,
                self.settings,
                name=self.name,
                resumed=self.resume is not None,
                open_mapping=self.open_mapping is not None,
                mark_running=lambda: self._sweep_to(SweepState.RUNNING, "resumed"),
                total=self.total,
            )

    async def commit_start(self, refused: str = "not started") -> None:
        """Commit the sweep's start, once (see :func:`sweep_journal.commit_start`)."""
        if not self._committed:
            self.open_in_journal()
            await commit_start(self.journal, self.sweep_id, refused)
            self._committed = True

    def _journal_failed(self, error: str) -> None:
        """A write of this sweep was lost: what the journal holds of it is incomplete, so it
        stops (no new runs, running ones stopped) and ends ``failed`` with the reason, even if
        it was already stopping for another one."""
        if self._journal_error is not None or self.state in SWEEP_TERMINAL:
            return
        self._journal_error = error
        reason = f"journal write failed: {error}"
        self.request_stop(reason, final_state=SweepState.FAILED)
        self._stop_state, self.reason = SweepState.FAILED, reason

    async def _budget_spent(self) -> None:
        self.request_stop(f"the time budget of {self.limits.max_time:g}s is spent")

    async def _finish_sweep(self) -> SweepResult:
        if self.total != self._total:  # an adaptive search made fewer (or more) runs
            self._total = self.total
            self.journal.set_sweep_total(self.sweep_id, self._total)
        # Every write of the runs is tried before the ending is decided: a lost one decides it.
        await self.journal.flush()
        lost = self.journal.lost(self.sweep_id)
        if lost is not None:
            self._journal_failed(lost)
        states = self.state_counts()
        ending = self._ending(states)
        counts = {state.value: n for state, n in states.items() if n}
        finished = self.bus.stamp(SweepFinished, state=ending[0], reason=ending[1], counts=counts)
        hearing = [s for s in self._observers if SweepFinished in s.types]
        if hearing:
            # The observing plugins hear the end first: one failing on it under
            # --strict-plugins stops the sweep, and the sweep then ends failed, not as heard.
            await self.bus.send_to(finished, hearing)
            for subscription in hearing:
                await subscription.wait_caught_up()
            if self._ending(states) != ending:  # announced anew, after the stop it caused
                ending = self._ending(states)
                finished = self.bus.stamp(
                    SweepFinished, state=ending[0], reason=ending[1], counts=counts
                )
        final, reason = ending
        self._sweep_to(final, reason)
        await self.bus.publish(finished, skip=hearing)
        await self.journal.flush()  # the final state, if it cannot be written, is retried
        return SweepResult(
            self.sweep_id,
            final,
            reason,
            self._result_runs(),
            self._journal_error or self.journal.lost(self.sweep_id),
        )

    def _ending(self, states: Counter[RunState]) -> tuple[SweepState, str | None]:
        # A rerun of some configurations (``only``) leaves those that never ran unrun.
        partial = self.resume is not None and self.resume.only is not None
        return sweep_ending_counted(
            states,
            stop=self._stop_state,
            stop_reason=self.reason,
            feed_error=self._feed_error,
            unrun=max(0, self.total - sum(states.values())) if partial else 0,
        )

    def _result_runs(self) -> Sequence[RunRecord]:
        """The result's runs: the records themselves in a small sweep, else read from the
        journal page by page when they are looked at."""
        return JournalRuns(self.journal, self.sweep_id) if self._flat else self.all_runs()

    def all_runs(self) -> list[RunRecord]:
        """Every configuration's newest run: earlier invocations' and this one's (once
        finished runs left memory, read from the journal: every run, so only on request)."""
        if self._flat:
            return list(JournalRuns(self.journal, self.sweep_id))
        return list(self.runs) if self.resume is None else self.resume.merged(self.runs)

    async def _feed(self, tg: anyio.abc.TaskGroup) -> None:
        """Ask the searcher for a configuration each time a slot frees, until it is done."""
        limiter = anyio.CapacityLimiter(self.concurrency)
        replay, index = self._restore_search()
        while True:
            token = object()
            await limiter.acquire_on_behalf_of(token)
            try:
                if replay:
                    at, suggestion = replay.pop(0)
                else:
                    at, got = index, await self._suggestion(index)
                    if isinstance(got, Done) or self.stopping:
                        limiter.release_on_behalf_of(token)
                        return
                    suggestion = got
                    index += 1
                spec = self.plan.render(at, suggestion.params, new_run_id())
                if not self.adaptive and self.resume is not None and not self.resume.wants(spec):
                    limiter.release_on_behalf_of(token)
                    continue
            except (SpecError, SearchError) as exc:
                limiter.release_on_behalf_of(token)
                self._feed_error = str(exc)
                return
            except BaseException:
                limiter.release_on_behalf_of(token)
                raise
            await self.journal.keep_up()  # the journal writes as fast as runs come
            run = await self._create(spec, suggestion)
            tg.start_soon(self._execute, run, limiter, token)

    async def _suggestion(self, index: int) -> Suggestion | Done:
        """The searcher's next configuration; while it waits for results, wait for the next
        one to be told and ask again (a stop ends the wait: the feed is cancelled)."""
        await self.feedback.before(index)
        while not self.stopping:
            self.feedback.armed()
            got = await self.searcher.suggest(index)
            if not isinstance(got, Wait):
                return got
            if not await self.feedback.more(index, running=bool(self.active)):
                raise SpecError("the search waits for results while no run is going")
        return DONE

    def _observe(self, run: RunRecord) -> None:
        """Tell the searcher how a run ended (cached and skipped runs too), then wake a
        feed waiting for it."""
        self.feedback.ended(
            run.index, Observation(run.state.value, dict(run.metrics), dict(run.outputs))
        )

    def _restore_search(self) -> tuple[list[tuple[int, Suggestion]], int]:
        """Rebuild a resumed adaptive search from its journaled suggestions, and say which to
        run again first (same index, same configuration) and the next index. Run again: those
        whose run never ended on its own (lost with its orchestrator, stopped, never started),
        and those that ended while no orchestrator read their output, when nothing of what
        they reported survived (not a metric in the journal or their log): the search needs
        their result, not just their exit status."""
        if not self.adaptive or self.resume is None:
            return [], 0
        rows = self.journal.suggestions_of(self.sweep_id)
        runs = {run.id: run for run in self.journal.runs_of(self.sweep_id)}  # one read, not N
        ids = [row.run_id for row in rows if row.run_id is not None]
        metrics, outputs = self.journal.last_metrics(ids), self.journal.outputs_of(ids)
        history: list[Past] = []
        replay: list[tuple[int, Suggestion]] = []
        for row in rows:
            suggestion = Suggestion(row.params, row.place, row.resumes)
            run = runs.get(row.run_id) if row.run_id is not None else None
            observation = None
            if run is not None:
                self._run_at[row.index] = run.id
                if run.state in _ENDED_ON_ITS_OWN and run.reason != LOST:
                    reported, given = metrics.get(run.id, {}), outputs.get(run.id, {})
                    if run.reason == RECOVERED:  # it ended while no one was writing them down
                        logged = logged_metrics(RunLayout(self.home, run.id).stdout)
                        reported = reported | logged
                        given = given | {k: v for k, v in logged.items() if k in self._outputs}
                    if run.reason != RECOVERED or reported:
                        observation = Observation(run.state, reported, given)
            if observation is None:
                replay.append((row.index, suggestion))
            history.append(Past(row.index, suggestion, observation))
        self.searcher.restore(history)
        self.feedback.restored(history)
        return replay, rows[-1].index + 1 if rows else 0

    async def _create(self, spec: RunSpec, suggestion: Suggestion) -> RunRecord:
        attempt = self.resume.attempt(spec) if self.resume is not None else 1
        run = RunRecord(id=spec.uuid, index=spec.index, spec=spec, attempt=attempt)
        self._created += 1
        if not self._flat and self._created > self.settings.keep_finished:
            self._let_go()
        if not self._flat:
            self.runs.append(run)
        if self.resume is not None:
            self._rerun.add(spec.params_hash)
        self.by_id[run.id] = run
        self.active[run.id] = run
        if self.adaptive:
            self._run_at[run.index] = run.id
            run.place = suggestion.place
            if suggestion.resumes is not None:
                run.resumes_from = self._run_at.get(suggestion.resumes)
            run.suggested = {
                "params": suggestion.params,
                "place": suggestion.place,
                "resumes": suggestion.resumes,
            }
            self.journal.add_suggestion(
                self.sweep_id, run.index, suggestion.params, suggestion.place, suggestion.resumes
            )
        self.journal.add_run(
            run.id,
            self.sweep_id,
            run.index,
            spec.config_hash,
            msgspec.json.encode(spec.params).decode(),
            msgspec.json.encode(spec.argv).decode(),
            str(RunLayout(self.home, run.id).run_dir),
            spec.params_hash,
        )
        await self.bus.emit(
            RunCreated,
            run_id=run.id,
            index=run.index,
            params=spec.params,
            argv=spec.argv,
            place=run.place,
        )
        return run

    # ------------------------------------------------------------------ one run
    async def _execute(self, run: RunRecord, limiter: anyio.CapacityLimiter, token: object) -> None:
        """One run, from queued to its end, in this one task; plugins hear ``on_run_finished``
        however it ended (executed, cached, skipped, stopped while it waited)."""
        try:
            run.stop = StopRequest()
            await self.transition(run, RunState.QUEUED)
            executed = await self._to_the_end(run)
            if run.state in TERMINAL:
                self._observe(run)
            if self.plugins is not None and run.state in TERMINAL:
                await self.plugins.call_all("on_run_finished", run=run, ctx=self.ctx)
            if executed and self.limits.ttl is not None:
                assert self._timers is not None
                self._timers.remove_later(
                    self.journal, RunLayout(self.home, run.id), self.limits.ttl
                )
        finally:
            if run.state in TERMINAL:  # one cut short by an error is ended by _abandon
                self._leave(run)
            limiter.release_on_behalf_of(token)

    async def _to_the_end(self, run: RunRecord) -> bool:
        """Drive ``run`` to a final state; True when it was executed (not cached, skipped or
        stopped before it started)."""
        if await self._stopped_while_queued(run) or await self._decided(run):
            return False
        if run.resumes_from is not None and not await self._continued(run, run.resumes_from):
            return True
        while True:
            outcome = await self._attempt_in_slot(run)
            if outcome is None:
                return False
            why = retry_reason(
                outcome,
                attempt=run.attempt,
                max_retries=self.limits.max_retries,
                timed_out=run.timed_out,
                stopping=self.stopping,
            )
            if why is None:
                break
            await self.transition(run, RunState.RETRYING, why, exit_code=outcome.exit_code)
            run.attempt += 1
            run.stop = StopRequest()
            await self.transition(run, RunState.QUEUED)
            if await self._stopped_while_queued(run):
                return False
        await self._finish(run, outcome)
        return True

    async def _continued(self, run: RunRecord, earlier: str) -> bool:
        """Give a promoted configuration its earlier run's outputs (hyperband's ``resume``:
        the run continues from its checkpoint); False when they could not be copied (the run
        failed with the reason)."""
        source = RunLayout(self.home, earlier).outputs
        target = RunLayout(self.home, run.id).outputs
        try:
            await anyio.to_thread.run_sync(_copy_tree, source, target)
        except OSError as exc:
            await self.transition(run, RunState.FAILED, failure_reason(exc))
            return False
        return True

    def _leave(self, run: RunRecord) -> None:
        """A finished run leaves memory: only its state is counted, unless the sweep still
        keeps finished records (a small one; see ``SweepSettings.keep_finished``)."""
        self.active.pop(run.id, None)
        run.stop = None
        if self._flat:
            self.by_id.pop(run.id, None)

    async def _stopped_while_queued(self, run: RunRecord) -> bool:
        if not self.stopping:
            return False
        await self.transition(run, RunState.STOPPED, self.reason)
        return True

    async def _attempt_in_slot(self, run: RunRecord) -> Outcome | None:
        """One attempt, inside the daemon's shared slot when there is one and holding the
        resources the run asks for; None when the sweep was stopped while the run waited."""
        if self.shared_slots is None and self.resources is None:
            await self.transition(run, RunState.STARTING)
            return await self._attempt(run, self._no_devices)
        assert run.stop is not None
        slots = self.shared_slots
        if slots is not None and not await unless_stopped(
            run.stop.requested, lambda: _taken(slots.acquire(self.settings.priority))
        ):
            await self._stopped_waiting(run)
            return None
        try:
            if self.resources is None:
                if await self._stopped_while_queued(run):
                    return None
                await self.transition(run, RunState.STARTING)
                return await self._attempt(run, self._no_devices)
            return await self._attempt_holding(run, self.resources)
        finally:
            if self.shared_slots is not None:
                self.shared_slots.release()

    async def _stopped_waiting(self, run: RunRecord) -> None:
        """A run stopped while it waited for capacity (the sweep, or this run alone)."""
        assert run.stop is not None
        reason = self.reason if self.stopping else run.stop.reason
        await self.transition(run, RunState.STOPPED, reason)

    async def _attempt_holding(self, run: RunRecord, pool: ResourcePool) -> Outcome | None:
        """Wait for the run's share of the machine (a stop ends the wait), hold it for the
        attempt, give it back however the attempt ends."""
        assert run.stop is not None
        assignment = await pool.acquire_unless(
            self.plan.request, run.stop.requested, self.settings.priority
        )
        if assignment is None:
            await self._stopped_waiting(run)
            return None
        try:
            if await self._stopped_while_queued(run):
                return None
            run.resources = assignment.describe()
            self.journal.set_resources(run.id, run.resources)
            await self.transition(run, RunState.STARTING)
            return await self._attempt(run, assignment.environment())
        finally:
            pool.release(assignment)

    async def _attempt(self, run: RunRecord, devices: dict[str, str] | None) -> Outcome:
        """One execution, bounded by ``termination.timeout``. Whatever goes wrong in it (no
        space for the logs, an argument the OS refuses) fails this run, never the sweep."""
        assert run.stop is not None
        stop = run.stop

        async def started(pid: int | None) -> None:
            if job.placement is not None:  # run off this machine: journaled where, with RUNNING
                self.journal.set_placement(run.id, job.placement.worker, job.placement.host)
            await self.transition(run, RunState.RUNNING, pid=pid)

        output = RunOutput(run, self.bus, self.journal, self._outputs)
        job = job_for(run, self.sweep_id, self.home, self._base_dir, self._base_env, devices)
        if run.spec.env:  # what the spec gave this run (the rest is the sweep's provenance)
            self.journal.set_run_env(run.id, redacted(run.spec.env, self._secrets))
        try:
            if self.limits.timeout is None:  # the common case needs no watchdog task
                return await self.executor.execute(job, output, stop, started)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._deadline, run, stop, self.limits.timeout)
                outcome = await self.executor.execute(job, output, stop, started)
                tg.cancel_scope.cancel()
            return outcome
        except Exception as exc:
            return Outcome(None, error=failure_reason(exc))

    async def _deadline(self, run: RunRecord, stop: StopRequest, seconds: float) -> None:
        await anyio.sleep(seconds)
        if not stop.is_requested:
            run.timed_out = True
            stop.request("timeout", self.grace)

    async def _decided(self, run: RunRecord) -> bool:
        """Ask ``decide_before_run``; True when the run ended without executing."""
        if self.plugins is None or not self.plugins.implements("decide_before_run"):
            return False
        while True:
            decision = await self.plugins.call_first("decide_before_run", run=run, ctx=self.ctx)
            if not isinstance(decision, Defer):
                break
            await decision.until.wait()
            if await self._stopped_while_queued(run):
                return True
        if isinstance(decision, UseCached):
            try:
                await adopt_cached(run, decision, self.journal, self.home)
            except OSError as exc:  # no room to copy the logs: this run fails, not the sweep
                await self.transition(run, RunState.FAILED, failure_reason(exc))
            else:
                await self.transition(run, RunState.SUCCEEDED, decision.reason)
        elif isinstance(decision, Skip):
            await self.transition(run, RunState.SKIPPED, decision.reason)
        else:
            return False
        return True

    async def _finish(self, run: RunRecord, outcome: Outcome) -> None:
        for name, value in run.outputs.items():
            self.journal.set_output(run.id, name, value)
        if outcome.cpu_s is not None:
            run.cpu_s, run.max_rss = outcome.cpu_s, outcome.max_rss
            self.journal.set_usage(run.id, outcome.cpu_s, outcome.max_rss)
        moves = run_ending(
            outcome,
            state=run.state,
            timed_out=run.timed_out,
            timeout=self.limits.timeout,
            stop_reason=run.stop.reason if run.stop else None,
            stderr_tail=run.stderr_tail,
        )
        for move in moves:
            await self.transition(
                run, move.to, move.reason, exit_code=move.exit_code, stderr_tail=move.stderr_tail
            )
