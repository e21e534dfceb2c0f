"""``ctx``: what plugins may do to a running sweep, and what they may read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.engine.states import SweepState

if TYPE_CHECKING:
    from orchestrator.engine.sweep import RunRecord, SweepController
    from orchestrator.spec.load import LoadedSpec
    from orchestrator.spec.resolve import Plan

__all__ = ["PluginContext", "RunView"]


@dataclass(frozen=True)
class RunView:
    """A read-only snapshot of one run."""

    id: str
    index: int
    state: str
    reason: str | None
    params: dict[str, Any]
    outputs: dict[str, Any]
    metrics: dict[str, float]


class PluginContext:
    """Handed to every hook as ``ctx``."""

    def __init__(self, controller: SweepController) -> None:
        self._controller = controller

    @property
    def sweep_id(self) -> str:
        return self._controller.sweep_id

    @property
    def home(self) -> Path:
        return self._controller.home

    @property
    def spec(self) -> LoadedSpec:
        return self._controller.plan.spec

    @property
    def plan(self) -> Plan:
        return self._controller.plan

    def stop_run(self, run_id: str, reason: str) -> bool:
        """Stop one running run (SIGTERM, grace, SIGKILL); False if it is not running."""
        run = self._controller.active.get(run_id)
        if run is None or run.stop is None:
            return False
        run.stop.request(reason, self._controller.grace)
        return True

    def stop_sweep(self, reason: str, final_state: str = "stopped") -> None:
        """Start no new runs and stop the running ones; the sweep ends ``final_state``."""
        self._controller.request_stop(reason, final_state=SweepState(final_state))

    def _view(self, run: RunRecord) -> RunView:
        return RunView(
            run.id,
            run.index,
            run.state.value,
            run.reason,
            dict(run.spec.params),
            dict(run.outputs),
            dict(run.metrics),
        )

    def runs(self) -> list[RunView]:
        """Every run of the sweep so far (earlier invocations' newest ones included)."""
        return [self._view(r) for r in self._controller.all_runs()]

    def run(self, run_id: str) -> RunView | None:
        record = self._controller.by_id.get(run_id)
        return self._view(record) if record is not None else None

    def metrics(self, run_id: str) -> dict[str, float]:
        view = self.run(run_id)
        return view.metrics if view else {}

    def outputs(self, run_id: str) -> dict[str, Any]:
        view = self.run(run_id)
        return view.outputs if view else {}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for run in self._controller.all_runs():
            out[run.state.value] = out.get(run.state.value, 0) + 1
        return out

    async def journaled_state(self, run_id: str) -> str | None:
        """The state the journal holds for any run of the home folder (None: unknown)."""
        journal = self._controller.journal
        await journal.flush()
        rows = journal.query("SELECT state FROM runs WHERE id = ?", (run_id,))
        return str(rows[0]["state"]) if rows else None
