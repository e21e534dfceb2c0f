"""The Executor protocol: what the sweep controller needs from any backend.

An executor turns a :class:`Job` into a process somewhere, streams its output lines back
through an :class:`OutputSink`, honours a :class:`StopRequest` (terminate, grace, kill), and
returns an :class:`Outcome`. Nothing here assumes the process is local, so a remote backend
(Dask: run on a worker, lines back as events, stop via cancel) can implement the same shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio

from orchestrator.spec import models as m
from orchestrator.store.layout import RunLayout

__all__ = ["Executor", "Job", "Outcome", "OutputSink", "StopRequest"]


@dataclass
class Job:
    """Everything needed to start one run."""

    run_id: str
    index: int
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    layout: RunLayout
    init: list[m.Init] = field(default_factory=list)


class OutputSink(Protocol):
    async def line(self, stream: str, text: str) -> None:
        """One decoded line of ``stream`` (``stdout`` or ``stderr``), without its newline."""


@dataclass
class Outcome:
    """How a run ended: an exit code, or the reason it never started."""

    exit_code: int | None
    #: Set when the process could not be started (missing command, failed init...).
    error: str | None = None
    #: True when it ended because a stop was requested.
    stopped: bool = False


class StopRequest:
    """Ask a running job to stop: SIGTERM to its group, ``grace`` seconds, then SIGKILL."""

    def __init__(self) -> None:
        self.requested = anyio.Event()
        self.kill_now = anyio.Event()
        self.reason: str | None = None
        self.grace: float = 10.0

    def request(self, reason: str, grace: float) -> None:
        if not self.requested.is_set():
            self.reason = reason
            self.grace = grace
            self.requested.set()
        if grace <= 0:
            self.kill_now.set()

    @property
    def is_requested(self) -> bool:
        return self.requested.is_set()


class Executor(Protocol):
    async def execute(
        self,
        job: Job,
        sink: OutputSink,
        stop: StopRequest,
        started: Callable[[int | None], Awaitable[None]],
    ) -> Outcome:
        """Run ``job`` to completion; call ``started(pid)`` once the process is alive."""
