"""Run and sweep states, the one table of allowed transitions, and nothing else.

No code assigns a state except :meth:`orchestrator.engine.sweep.SweepController.transition`,
which checks :data:`ALLOWED`, journals, then publishes ``RunStateChanged``. Polyaxon has no such
table (its server accepts almost any move); ours makes an impossible move a bug that fails loudly.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "ALLOWED",
    "SWEEP_ALLOWED",
    "SWEEP_TERMINAL",
    "TERMINAL",
    "InvalidTransition",
    "RunState",
    "SweepState",
    "check_transition",
]


class RunState(str, Enum):
    #: Rendered from the matrix and journaled; not yet waiting for a slot.
    CREATED = "created"
    #: Holds a slot; about to be handed to the executor (or served from the cache).
    QUEUED = "queued"
    #: The executor is preparing it (init, working folder) and spawning the process.
    STARTING = "starting"
    #: Its process is alive.
    RUNNING = "running"
    #: A stop was requested; waiting for the process group to exit (grace, then SIGKILL).
    STOPPING = "stopping"
    #: Failed and about to run again (``termination.maxRetries``).
    RETRYING = "retrying"
    #: Exited 0 (or served from the cache).
    SUCCEEDED = "succeeded"
    #: Exited non-zero, could not start, or its orchestrator was lost.
    FAILED = "failed"
    #: Stopped by the user, a time limit or early stopping.
    STOPPED = "stopped"
    #: Not run on purpose (conditions, a decision hook).
    SKIPPED = "skipped"
    #: Not run because something it depended on failed.
    UPSTREAM_FAILED = "upstream_failed"

    def __str__(self) -> str:
        return self.value


TERMINAL = frozenset(
    {
        RunState.SUCCEEDED,
        RunState.FAILED,
        RunState.STOPPED,
        RunState.SKIPPED,
        RunState.UPSTREAM_FAILED,
    }
)

_S = RunState
ALLOWED: dict[RunState, frozenset[RunState]] = {
    _S.CREATED: frozenset({_S.QUEUED, _S.SKIPPED, _S.STOPPED, _S.FAILED, _S.UPSTREAM_FAILED}),
    _S.QUEUED: frozenset({_S.STARTING, _S.SUCCEEDED, _S.SKIPPED, _S.STOPPED, _S.FAILED}),
    _S.STARTING: frozenset({_S.RUNNING, _S.STOPPING, _S.FAILED, _S.STOPPED, _S.RETRYING}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.STOPPING, _S.STOPPED, _S.RETRYING}),
    _S.STOPPING: frozenset({_S.STOPPED, _S.FAILED, _S.SUCCEEDED}),
    _S.RETRYING: frozenset({_S.QUEUED, _S.STOPPED, _S.FAILED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.STOPPED: frozenset(),
    _S.SKIPPED: frozenset(),
    _S.UPSTREAM_FAILED: frozenset(),
}


class SweepState(str, Enum):
    CREATED = "created"
    RUNNING = "running"
    #: Stop requested: no new runs start; running ones are being stopped.
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


SWEEP_TERMINAL = frozenset({SweepState.SUCCEEDED, SweepState.FAILED, SweepState.STOPPED})
_W = SweepState
SWEEP_ALLOWED: dict[SweepState, frozenset[SweepState]] = {
    _W.CREATED: frozenset({_W.RUNNING, _W.FAILED, _W.STOPPED}),
    _W.RUNNING: frozenset({_W.STOPPING, _W.SUCCEEDED, _W.FAILED, _W.STOPPED}),
    _W.STOPPING: frozenset({_W.SUCCEEDED, _W.FAILED, _W.STOPPED}),
    # A finished sweep runs again when resumed or re-run (``resume``, ``rerun``).
    _W.SUCCEEDED: frozenset({_W.RUNNING}),
    _W.FAILED: frozenset({_W.RUNNING}),
    _W.STOPPED: frozenset({_W.RUNNING}),
}


class InvalidTransition(RuntimeError):
    """A move the table forbids: always a bug in the engine, never a user error."""


def check_transition(current: RunState, to: RunState) -> None:
    if to not in ALLOWED[current]:
        raise InvalidTransition(f"run cannot go from {current} to {to}")
