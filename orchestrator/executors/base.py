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
from typing import Any, Protocol

import anyio

from orchestrator.spec import models as m
from orchestrator.store.layout import RunLayout

__all__ = [
    "Executor",
    "Job",
    "LineSink",
    "Outcome",
    "OutputSink",
    "Placement",
    "StopRequest",
    "split_lines",
]


@dataclass(frozen=True)
class Placement:
    """Where a remote executor started a job: its worker's address, that machine's name."""

    worker: str
    host: str | None = None


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
    #: Set by an executor that runs the job off this machine, before it calls ``started``:
    #: where it runs (journaled with the run's start). None: here.
    placement: Placement | None = None
    #: Which configuration of which sweep it is (``sweep``, ``index``, ``params_hash``,
    #: ``params`` as JSON text, and an adaptive search's ``suggestion``), written with each
    #: attempt's start in the exit-status file: the run starts before the journal's batched
    #: write of its creation commits, and recovery then still knows it.
    identity: dict[str, Any] | None = None


class OutputSink(Protocol):
    async def line(self, stream: str, text: str) -> None:
        """One decoded line of ``stream`` (``stdout`` or ``stderr``), without its newline."""

    async def chunk(self, stream: str, data: bytes | bytearray, start: int, end: int) -> None:
        """The whole lines of ``data[start:end]``, separated by ``\\n`` (the last one without
        its newline), none over the executor's line limit. One call per chunk read, so that
        output costs no ``await`` per line; the sink decodes (undecodable bytes replaced)
        only what it looks at (:func:`split_lines`). ``data`` may be the executor's read
        buffer, reused once this returns: keep what you need of it, not ``data``."""


def split_lines(data: bytes | bytearray, start: int, end: int) -> list[str]:
    """The lines of a :meth:`OutputSink.chunk`, decoded (undecodable bytes replaced). Decoding
    the whole block gives the same text as decoding line by line: ``\\n`` is never part of
    a multi-byte sequence, and it ends any invalid one."""
    return data[start:end].decode(errors="replace").split("\n")


class LineSink:
    """A sink that takes lines one by one: :meth:`chunk` hands each to :meth:`line`."""

    async def line(self, stream: str, text: str) -> None:
        raise NotImplementedError

    async def chunk(self, stream: str, data: bytes | bytearray, start: int, end: int) -> None:
        for text in split_lines(data, start, end):
            await self.line(stream, text)


@dataclass
class Outcome:
    """How a run ended: an exit code, or the reason it never started."""

    exit_code: int | None
    #: Set when the process could not be started (missing command, failed init...).
    error: str | None = None
    #: True when it ended because a stop was requested.
    stopped: bool = False
    #: The kernel's accounting of the process (``wait4``): user + system CPU seconds and peak
    #: resident memory in bytes, its waited-for children's included; None when unknown.
    #: Measurements, not part of how it ended: two outcomes compare equal without them.
    cpu_s: float | None = field(default=None, compare=False)
    max_rss: int | None = field(default=None, compare=False)


class StopRequest:
    """Ask a running job to stop: SIGTERM to its group, ``grace`` seconds, then SIGKILL.

    Its events are made when first asked for: most runs are never asked to stop, and an
    executor may follow requests with :meth:`on_request` instead."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.grace: float = 10.0
        self._requested = False
        self._kill_now = False
        self._requested_event: anyio.Event | None = None
        self._kill_now_event: anyio.Event | None = None
        self._listeners: list[Callable[[], None]] = []

    @property
    def requested(self) -> anyio.Event:
        """Set at the first request."""
        if self._requested_event is None:
            self._requested_event = anyio.Event()
            if self._requested:
                self._requested_event.set()
        return self._requested_event

    @property
    def kill_now(self) -> anyio.Event:
        """Set by a request with no grace: SIGKILL at once."""
        if self._kill_now_event is None:
            self._kill_now_event = anyio.Event()
            if self._kill_now:
                self._kill_now_event.set()
        return self._kill_now_event

    def request(self, reason: str, grace: float) -> None:
        if not self._requested:
            self.reason = reason
            self.grace = grace
            self._requested = True
            if self._requested_event is not None:
                self._requested_event.set()
        if grace <= 0:
            self._kill_now = True
            if self._kill_now_event is not None:
                self._kill_now_event.set()
        for listener in list(self._listeners):
            listener()

    def on_request(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` at every :meth:`request` from now on, and at once if one came
        already (an executor that acts in the call, not in a task waiting on
        :attr:`requested`); returns what stops the calls."""
        self._listeners.append(listener)
        if self._requested:
            listener()
        return lambda: self._listeners.remove(listener)

    @property
    def is_requested(self) -> bool:
        return self._requested

    @property
    def kill_is_due(self) -> bool:
        """A request said to kill at once."""
        return self._kill_now


class Executor(Protocol):
    async def execute(
        self,
        job: Job,
        sink: OutputSink,
        stop: StopRequest,
        started: Callable[[int | None], Awaitable[None]],
    ) -> Outcome:
        """Run ``job`` to completion; call ``started(pid)`` once the process is alive."""
