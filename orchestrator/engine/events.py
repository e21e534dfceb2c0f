"""Events: frozen msgspec Structs with a type tag, serialisable to JSON for the daemon.

Every event carries the sweep id, a monotonic sequence number (per sweep) and a wall-clock
timestamp; run events carry the run id and index too.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "Event",
    "LogLine",
    "MetricReported",
    "RunCreated",
    "RunStateChanged",
    "SweepFinished",
    "SweepStarted",
    "SweepStopping",
]


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    sweep_id: str
    seq: int
    ts: float


class SweepStarted(_Event, frozen=True, tag="sweep_started"):
    name: str | None
    total: int
    concurrency: int


class RunCreated(_Event, frozen=True, tag="run_created"):
    run_id: str
    index: int
    params: dict[str, Any]
    argv: list[str]


class RunStateChanged(_Event, frozen=True, tag="run_state_changed"):
    run_id: str
    index: int
    previous: str
    state: str
    reason: str | None = None
    exit_code: int | None = None
    #: The last stderr lines of a run that just failed, so they show at once.
    stderr_tail: list[str] | None = None
    #: A finished run's outputs (the "tell" of an open mapping).
    outputs: dict[str, Any] | None = None


class LogLine(_Event, frozen=True, tag="log_line"):
    run_id: str
    index: int
    stream: str
    line: str


class MetricReported(_Event, frozen=True, tag="metric_reported"):
    run_id: str
    index: int
    step: int | None
    values: dict[str, float]


class SweepStopping(_Event, frozen=True, tag="sweep_stopping"):
    """A stop was decided (Ctrl-C, a time budget, early stopping...): why, and how it ends."""

    reason: str
    final_state: str


class SweepFinished(_Event, frozen=True, tag="sweep_finished"):
    state: str
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
