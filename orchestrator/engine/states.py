"""Run and sweep states, the one table of allowed transitions, and every set derived from it.

Every state change, a run's or a sweep's, a live one or one recovered after a crash, is checked
here (:func:`check_transition`, :func:`check_sweep_transition`) before it is journaled and
announced. Polyaxon has no such table (its server accepts almost any move); ours makes an
impossible move a bug that fails loudly. "Finished" and "unfinished" are derived from the table,
never written out again elsewhere.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "ALLOWED",
    "SWEEP_ALLOWED",
    "SWEEP_TERMINAL",
    "SWEEP_UNFINISHED",
    "TERMINAL",
    "UNFINISHED",
    "InvalidTransition",
    "RunState",
    "SweepState",
    "check_sweep_transition",
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

#: States a run never leaves.
TERMINAL = frozenset(state for state, nexts in ALLOWED.items() if not nexts)
#: States of a run that still needs its orchestrator (recovery fails these when it is gone).
UNFINISHED = frozenset(RunState) - TERMINAL


class SweepState(str, Enum):
    CREATED = "created"
    RUNNING = "running"
    #: Stop requested: no new runs start; running ones are being stopped.
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    #: A pipeline's node that never ran on purpose (its conditions were false, or an
    #: upstream node was skipped and it says ``skipOnUpstreamSkip``).
    SKIPPED = "skipped"
    #: A pipeline's node that never ran because its trigger can no longer be met.
    UPSTREAM_FAILED = "upstream_failed"

    def __str__(self) -> str:
        return self.value


_W = SweepState
#: A node's decision not to run is taken anew when its pipeline is resumed or re-run.
_UNRUN = frozenset({_W.SKIPPED, _W.UPSTREAM_FAILED})
SWEEP_ALLOWED: dict[SweepState, frozenset[SweepState]] = {
    _W.CREATED: frozenset({_W.RUNNING, _W.FAILED, _W.STOPPED, *_UNRUN}),
    _W.RUNNING: frozenset({_W.STOPPING, _W.SUCCEEDED, _W.FAILED, _W.STOPPED}),
    _W.STOPPING: frozenset({_W.SUCCEEDED, _W.FAILED, _W.STOPPED}),
    # A finished sweep runs again only when resumed or re-run (``resume``, ``rerun``); a
    # node of a resumed pipeline may instead not run this time.
    _W.SUCCEEDED: frozenset({_W.RUNNING}),
    _W.FAILED: frozenset({_W.RUNNING, *_UNRUN}),
    _W.STOPPED: frozenset({_W.RUNNING, *_UNRUN}),
    _W.SKIPPED: frozenset({_W.RUNNING, _W.UPSTREAM_FAILED}),
    _W.UPSTREAM_FAILED: frozenset({_W.RUNNING, _W.SKIPPED}),
}

#: Finished sweeps: the only way back to running is a resume (``created`` is the one
#: unfinished state that moves to running too).
SWEEP_TERMINAL = frozenset(
    s for s, nexts in SWEEP_ALLOWED.items() if _W.RUNNING in nexts and s is not _W.CREATED
)
#: Sweeps that still need their orchestrator.
SWEEP_UNFINISHED = frozenset(SweepState) - SWEEP_TERMINAL


class InvalidTransition(RuntimeError):
    """A move the table forbids: always a bug in the engine, never a user error."""


def check_transition(current: RunState, to: RunState) -> None:
    if to not in ALLOWED[current]:
        raise InvalidTransition(f"run cannot go from {current} to {to}")


def check_sweep_transition(current: SweepState, to: SweepState) -> None:
    if to not in SWEEP_ALLOWED[current]:
        raise InvalidTransition(f"sweep cannot go from {current} to {to}")
