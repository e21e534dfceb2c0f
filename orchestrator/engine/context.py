"""``ctx``: what plugins may do to a running sweep, what they may read, and where they keep
state that lives exactly as long as the sweep."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from orchestrator.engine.outcome import count_states
from orchestrator.engine.records import RunRecord
from orchestrator.engine.states import RunState, SweepState

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
        record = self._sweep.by_id.get(run_id)
        return self._view(record) if record is not None else None

    def metrics(self, run_id: str) -> dict[str, float]:
        view = self.run(run_id)
        return view.metrics if view else {}

    def outputs(self, run_id: str) -> dict[str, Any]:
        view = self.run(run_id)
        return view.outputs if view else {}

    def counts(self) -> dict[str, int]:
        return count_states(r.state for r in self._sweep.all_runs())

    async def journaled_state(self, run_id: str) -> str | None:
        """The state the journal holds for any run of the home folder (None: unknown)."""
        journal = self._sweep.journal
        await journal.flush()
        return journal.run_state(run_id)
