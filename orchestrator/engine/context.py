"""``ctx``: what plugins may do to a running sweep, what they may read, and where they keep
state that lives exactly as long as the sweep."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from orchestrator.engine.records import RunRecord, record_from_row
from orchestrator.engine.states import RunState, SweepState
from orchestrator.engine.transitions import final_state_of
from orchestrator.exceptions import OrchestratorError

if TYPE_CHECKING:
    from orchestrator.spec.load import LoadedSpec
    from orchestrator.spec.resolve import Plan
    from orchestrator.store.journal import Journal

__all__ = ["PluginContext", "RunView", "SweepHandle"]

T = TypeVar("T")


class SweepHandle(Protocol):
    """What the context needs of the sweep controller (which satisfies it)."""

    @property
    def sweep_id(self) -> str: ...
    @property
    def home(self) -> Path: ...
    @property
    def plan(self) -> Plan: ...
    @property
    def grace(self) -> float: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def active(self) -> dict[str, RunRecord]: ...
    @property
    def by_id(self) -> dict[str, RunRecord]: ...
    def all_runs(self) -> list[RunRecord]: ...
    def state_counts(self) -> Counter[RunState]: ...
    async def provenance_recorded(self) -> None: ...
    def request_stop(
        self, reason: str, *, grace: float | None = None, final_state: SweepState = ...
    ) -> None: ...


@dataclass(frozen=True)
class RunView:
    """A read-only snapshot of one run."""

    id: str
    index: int
    state: RunState
    reason: str | None
    params: dict[str, Any]
    outputs: dict[str, Any]
    metrics: dict[str, float]


class PluginContext:
    """Handed to every hook as ``ctx``; one per sweep."""

    def __init__(self, sweep: SweepHandle) -> None:
        self._sweep = sweep
        self._per_sweep: dict[Hashable, Any] = {}

    @property
    def sweep_id(self) -> str:
        return self._sweep.sweep_id

    @property
    def home(self) -> Path:
        return self._sweep.home

    @property
    def spec(self) -> LoadedSpec:
        return self._sweep.plan.spec

    @property
    def plan(self) -> Plan:
        return self._sweep.plan

    def per_sweep(self, owner: Hashable, factory: Callable[[], T]) -> T:
        """``owner``'s state for this sweep, made by ``factory`` on first use. It goes when
        the sweep ends, so a long-lived process (the daemon) never carries it into the next
        sweep: keep memos that must not outlive a sweep here, not on the plugin object."""
        try:
            value: T = self._per_sweep[owner]
        except KeyError:
            value = self._per_sweep[owner] = factory()
        return value

    def stop_run(self, run_id: str, reason: str) -> bool:
        """Stop one running run (SIGTERM, grace, SIGKILL); False if it is not running."""
        run = self._sweep.active.get(run_id)
        if run is None or run.stop is None:
            return False
        run.stop.request(reason, self._sweep.grace)
        return True

    def stop_sweep(self, reason: str, final_state: str = SweepState.STOPPED) -> None:
        """Start no new runs and stop the running ones; the sweep ends ``final_state``."""
        self._sweep.request_stop(reason, final_state=SweepState(final_state))

    @staticmethod
    def _view(run: RunRecord) -> RunView:
        return RunView(
            run.id,
            run.index,
            run.state,
            run.reason,
            dict(run.spec.params),
            dict(run.outputs),
            dict(run.metrics),
        )

    def runs(self) -> list[RunView]:
        """Every run of the sweep so far (earlier invocations' newest ones included)."""
        return [self._view(r) for r in self._sweep.all_runs()]

    def run(self, run_id: str) -> RunView | None:
        """A run of this sweep: in memory while it runs (and in a small sweep), else as the
        journal has it."""
        record = self._sweep.by_id.get(run_id)
        if record is None:
            record = self._journaled(run_id)
        return self._view(record) if record is not None else None

    def _journaled(self, run_id: str) -> RunRecord | None:
        journal = self._sweep.journal
        try:
            row = journal.find_run(run_id)
        except OrchestratorError:
            return None
        if row.sweep_id != self.sweep_id:
            return None
        ids = [row.id]
        return record_from_row(
            row, journal.outputs_of(ids).get(row.id), journal.last_metrics(ids).get(row.id)
        )

    def metrics(self, run_id: str) -> dict[str, float]:
        view = self.run(run_id)
        return view.metrics if view else {}

    def outputs(self, run_id: str) -> dict[str, Any]:
        view = self.run(run_id)
        return view.outputs if view else {}

    def counts(self) -> dict[str, int]:
        return {state.value: n for state, n in self._sweep.state_counts().items() if n}

    def wait_journaled(self, timeout: float = 30.0) -> bool:
        """Block until every journal write queued so far has been tried; True when none of
        this sweep's was lost. For a plugin's own worker thread, never the event loop (the
        cache writes an entry only once its run's success is in the journal)."""
        journal = self._sweep.journal
        journal.flush_sync(timeout, check=False)
        return journal.lost(self.sweep_id) is None

    async def provenance(self) -> dict[str, Any] | None:
        """Where this invocation of the sweep runs, as the journal (and ``show``) keeps it:
        ``git_commit``, ``git_tree``, ``git_dirty``, ``diff``, ``python``,
        ``python_version``, ``packages``, ``host``, ``user``, ``platform``, ``cwd``,
        ``environment`` (secret-looking values redacted) and each large part's ``*_hash``.
        Runs created from now on ran with it. None when it could not be collected. Waits
        for it while it is being collected (at the start of the sweep)."""
        await self._sweep.provenance_recorded()
        journal = self._sweep.journal
        await journal.flush()
        made = journal.provenance_at(self.sweep_id, None)
        return made if made is not None and made["collected"] else None

    async def journaled_state(self, run_id: str) -> str | None:
        """The state the journal holds for any run of the home folder (None: unknown), with
        what this process has queued for it (see :func:`final_state_of`)."""
        return await final_state_of(self._sweep.journal, run_id)
