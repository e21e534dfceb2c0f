"""How runs and sweeps end, as pure functions of what happened: no processes, no I/O.

The controller applies the moves these return through its one checked transition; the unit
tests call them directly with every combination that matters.
"""

from __future__ import annotations

import errno
import signal
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from orchestrator.engine.states import RunState, SweepState
from orchestrator.executors.base import Outcome

__all__ = [
    "Move",
    "count_states",
    "exit_reason",
    "failure_reason",
    "retry_reason",
    "run_ending",
    "sweep_ending",
    "sweep_ending_counted",
]


class Move(NamedTuple):
    """One transition to apply to a run."""

    to: RunState
    reason: str | None = None
    exit_code: int | None = None
    #: The last stderr lines to show with it (a failure).
    stderr_tail: list[str] | None = None


def exit_reason(code: int | None) -> str:
    """``exit code 3``, or ``killed by SIGKILL`` for a negative (signal) code."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def failure_reason(exc: BaseException) -> str:
    """Why a run could not be run or watched, from what was raised: a short kind first
    (``disk_full``, ``invalid_argument``, ``os_error``, ``internal_error``), then detail."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, OSError):
        detail = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"disk_full: {detail}{where}"
        return f"os_error: {detail}{where}"
    if isinstance(exc, ValueError):
        return f"invalid_argument: {exc}"
    return f"internal_error: {type(exc).__name__}: {exc}"


def run_ending(
    outcome: Outcome,
    *,
    state: RunState,
    timed_out: bool,
    timeout: float | None,
    stop_reason: str | None,
    stderr_tail: Sequence[str] = (),
) -> list[Move]:
    """The moves that end a run whose last attempt had ``outcome`` (it is in ``state``)."""
    tail = list(stderr_tail) or None
    if outcome.stopped:
        reason = "timeout" if timed_out else stop_reason
        moves = [Move(RunState.STOPPING, reason)] if state is RunState.RUNNING else []
        if timed_out:
            note = f"(stopped after termination.timeout = {timeout or 0:g}s)"
            return [*moves, Move(RunState.FAILED, reason, outcome.exit_code, [note])]
        return [*moves, Move(RunState.STOPPED, reason, outcome.exit_code)]
    if outcome.error is not None:
        return [Move(RunState.FAILED, outcome.error, None, tail)]
    if outcome.exit_code == 0:
        return [Move(RunState.SUCCEEDED, None, 0)]
    return [Move(RunState.FAILED, exit_reason(outcome.exit_code), outcome.exit_code, tail)]


def retry_reason(
    outcome: Outcome, *, attempt: int, max_retries: int, timed_out: bool, stopping: bool
) -> str | None:
    """Why a run should run again (``termination.maxRetries``), or None. Stopped, early-stopped
    and timed-out runs are never retried, nor anything once the sweep is stopping."""
    failed = outcome.error is not None or outcome.exit_code not in (0, None)
    if outcome.stopped or timed_out or not failed or stopping or attempt > max_retries:
        return None
    detail = outcome.error or f"exit code {outcome.exit_code}"
    return f"{detail}; retry {attempt} of {max_retries}"


def sweep_ending(
    states: Sequence[RunState],
    *,
    stop: SweepState | None,
    stop_reason: str | None,
    feed_error: str | None,
) -> tuple[SweepState, str | None]:
    """A sweep's end state and reason from its runs' states (the newest run of each
    configuration), a requested stop and its final state, and a matrix that could not be
    rendered to the end (``feed_error``)."""
    return sweep_ending_counted(
        Counter(states), stop=stop, stop_reason=stop_reason, feed_error=feed_error
    )


def sweep_ending_counted(
    counts: Mapping[RunState, int],
    *,
    stop: SweepState | None,
    stop_reason: str | None,
    feed_error: str | None,
    unrun: int = 0,
) -> tuple[SweepState, str | None]:
    """:func:`sweep_ending` from the runs counted by state (a million runs need no list).
    ``unrun``: configurations of the sweep that have no run and that this invocation was not
    asked to run (a ``rerun --failed`` of a sweep stopped early): the sweep is not done."""
    if stop is not None:
        return stop, stop_reason
    total = sum(counts.values())
    if feed_error is not None and not total:
        return SweepState.FAILED, feed_error
    failed = counts.get(RunState.FAILED, 0)
    if failed:
        return SweepState.FAILED, f"{failed} of {total} runs failed"
    if total and counts.get(RunState.STOPPED, 0) == total:
        return SweepState.STOPPED, "all runs were stopped"
    if feed_error is not None:
        return SweepState.FAILED, feed_error
    if unrun > 0:
        return SweepState.STOPPED, (
            f"{unrun} of {total + unrun} configurations never ran (resume runs them)"
        )
    return SweepState.SUCCEEDED, None


def count_states(states: Iterable[RunState]) -> dict[str, int]:
    """How many runs are in each state, keyed by the state's value."""
    return {state.value: n for state, n in Counter(states).items()}
