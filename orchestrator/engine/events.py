"""Events: frozen msgspec Structs with a type tag, serialisable to JSON for the daemon.

Every event carries the sweep id, a monotonic sequence number (per sweep) and a wall-clock
timestamp, all three filled by :meth:`orchestrator.engine.bus.EventBus.emit`; run events carry
the run id and index too. States are :class:`RunState`/:class:`SweepState` (``str`` enums, so
``event.state == "failed"`` still holds, and JSON carries the plain value).
"""

from __future__ import annotations

from typing import Any

import msgspec

from orchestrator.engine.states import RunState, SweepState

__all__ = [
    "EVENT_TYPES",
    "Event",
    "EventBase",
    "LogLine",
    "MetricReported",
    "RunCreated",
    "RunStateChanged",
    "SweepFinished",
    "SweepStarted",
    "SweepStopping",
]


class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    sweep_id: str
    seq: int
    ts: float


class SweepStarted(EventBase, frozen=True, tag="sweep_started"):
    name: str | None
    total: int
    concurrency: int


class RunCreated(EventBase, frozen=True, tag="run_created"):
    run_id: str
    index: int
    params: dict[str, Any]
    argv: list[str]
    #: Where it sits in an adaptive search (``{"bracket": 2, "rung": 1}``); None otherwise.
    place: dict[str, Any] | None = None


class RunStateChanged(EventBase, frozen=True, tag="run_state_changed"):
    run_id: str
    index: int
    previous: RunState
    state: RunState
    reason: str | None = None
    exit_code: int | None = None
    #: The last stderr lines of a run that just failed, so they show at once.
    stderr_tail: list[str] | None = None
    #: A finished run's outputs (the "tell" of an open mapping).
    outputs: dict[str, Any] | None = None
    #: On ``starting``: what the run was given of the machine (devices, CPUs, memory).
    resources: dict[str, Any] | None = None


class LogLine(EventBase, frozen=True, tag="log_line"):
    run_id: str
    index: int
    stream: str
    line: str


class MetricReported(EventBase, frozen=True, tag="metric_reported"):
    run_id: str
    index: int
    step: int | None
    values: dict[str, float]


class SweepStopping(EventBase, frozen=True, tag="sweep_stopping"):
    """A stop was decided (Ctrl-C, a time budget, early stopping...): why, and how it ends."""

    reason: str
    final_state: SweepState


class SweepFinished(EventBase, frozen=True, tag="sweep_finished"):
    state: SweepState
    reason: str | None
    counts: dict[str, int]


Event = (
    SweepStarted
    | RunCreated
    | RunStateChanged
    | LogLine
    | MetricReported
    | SweepStopping
    | SweepFinished
)

#: Every event type, in the order a sweep first publishes them.
EVENT_TYPES: tuple[type[Event], ...] = (
    SweepStarted,
    RunCreated,
    RunStateChanged,
    LogLine,
    MetricReported,
    SweepStopping,
    SweepFinished,
)
