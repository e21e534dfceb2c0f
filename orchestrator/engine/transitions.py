"""The one place any state changes: check the move against the table, record it on the run,
journal it; for runs, return the event that announces it.

The controller publishes that event on its bus; recovery after a crash collects it for the
daemon's followers. Nothing else writes a state.
"""

from __future__ import annotations

import time

from orchestrator.engine.bus import EventBus
from orchestrator.engine.events import RunStateChanged
from orchestrator.engine.records import RunRecord
from orchestrator.engine.states import (
    SWEEP_TERMINAL,
    TERMINAL,
    RunState,
    SweepState,
    check_sweep_transition,
    check_transition,
)
from orchestrator.store.journal import Journal

__all__ = ["final_state_of", "move_run", "move_sweep"]


def move_run(
    journal: Journal,
    bus: EventBus,
    run: RunRecord,
    to: RunState,
    reason: str | None = None,
    exit_code: int | None = None,
    pid: int | None = None,
    stderr_tail: list[str] | None = None,
) -> RunStateChanged:
    """Move ``run`` to ``to``: checked, recorded, journaled; returns the event to publish."""
    previous = run.state
    check_transition(previous, to)
    run.state, run.reason = to, reason
    if exit_code is not None:
        run.exit_code = exit_code
    started, finished = to is RunState.RUNNING, to in TERMINAL
    if started:
        run.started_at = time.time()
    elif finished:
        run.finished_at = time.time()
    journal.record_transition(
        bus.sweep_id,
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
    return bus.stamp(
        RunStateChanged,
        run_id=run.id,
        index=run.index,
        previous=previous,
        state=to,
        reason=reason,
        exit_code=exit_code,
        stderr_tail=stderr_tail,
        outputs=dict(run.outputs) if finished else None,
        resources=run.resources if to is RunState.STARTING else None,
    )


def move_sweep(
    journal: Journal, sweep_id: str, current: SweepState, to: SweepState, reason: str | None
) -> SweepState:
    """Move a sweep from ``current`` to ``to``: checked and journaled; returns ``to``."""
    check_sweep_transition(current, to)
    journal.set_sweep_state(sweep_id, to.value, reason, finished=to in SWEEP_TERMINAL)
    return to


#: The values of the final run states, as the journal stores them.
_FINAL_VALUES = frozenset(state.value for state in TERMINAL)


async def final_state_of(journal: Journal, run_id: str) -> str | None:
    """The state the journal holds for ``run_id`` (None: no such run), as up to date as this
    process knows it. What is committed is read first: a final state there cannot change
    any more. Only otherwise may a newer state still be on its way to the journal from this
    process: everything queued is written first and the state read again. (A cache hit on
    an earlier run thus costs one query, not a wait for the writer's transaction.)"""
    state = journal.run_state(run_id)
    if state in _FINAL_VALUES:
        return state
    await journal.flush()
    return journal.run_state(run_id)
