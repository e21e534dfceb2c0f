"""A sweep's events as JSON lines, for CI systems (``orchestrator run --log-json FILE``).

One record per event, through the JSON logger of :mod:`orchestrator.diagnostics`::

    {"timestamp": "2025-01-31T12:00:00.123456Z", "level": "info", "event": "run_state_changed",
     "sweep_id": "...", "seq": 7, "ts": 1738324800.123456, "run_id": "...", ...}

``timestamp`` is the event's own time (``ts``), ``event`` its type tag, and every field of the
event follows (enums as their values). ``level`` is ``warning`` for a run that ends
``failed`` and for a ``sweep_stopping``, ``error`` for a sweep that ends ``failed``, ``info``
otherwise.

Each batch of records (whatever events are waiting, up to :data:`BATCH`) is written and
flushed by a worker thread, so a slow disk slows the log, not the event loop; a log on
``sys.stdout``/``sys.stderr`` is written from the event loop's thread instead, since other
code writes to those streams from there and text streams are not thread-safe.
"""

from __future__ import annotations

import contextlib
import io
import sys
from typing import IO, TYPE_CHECKING

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream

from orchestrator.engine.events import Event, RunStateChanged, SweepFinished, SweepStopping
from orchestrator.engine.states import RunState, SweepState

if TYPE_CHECKING:
    from anyio.abc import ObjectReceiveStream
    from structlog.typing import FilteringBoundLogger

__all__ = ["BATCH", "EventLog", "open_event_log", "write_event_log"]

#: At most this many events are rendered and written at once.
BATCH = 512


def open_event_log(target: str) -> contextlib.AbstractContextManager[IO[str]]:
    """``target`` opened for appending (UTF-8); ``-`` is ``sys.stderr``, left open on exit.

    Raises ``OSError`` at once when the file cannot be opened.
    """
    if target == "-":
        return contextlib.nullcontext(sys.stderr)
    return open(target, "a", encoding="utf-8")


def _level(event: Event) -> str:
    if isinstance(event, RunStateChanged) and event.state == RunState.FAILED:
        return "warning"
    if isinstance(event, SweepStopping):
        return "warning"
    if isinstance(event, SweepFinished) and event.state == SweepState.FAILED:
        return "error"
    return "info"


def _record(logger: FilteringBoundLogger, event: Event) -> None:
    from orchestrator.diagnostics import iso_timestamp

    # A dict; enums become their values, anything msgspec cannot convert its str().
    fields = msgspec.to_builtins(event, enc_hook=str)
    tag = fields.pop("type")
    fields["timestamp"] = iso_timestamp(event.ts)
    level = _level(event)
    if level == "error":
        logger.error(tag, **fields)
    elif level == "warning":
        logger.warning(tag, **fields)
    else:
        logger.info(tag, **fields)


def _write(sink: IO[str], text: str) -> None:
    sink.write(text)
    sink.flush()


async def write_event_log(receive: ObjectReceiveStream[Event], sink: IO[str]) -> None:
    """Write every event from ``receive`` to ``sink``, one JSON record per line, until the
    stream ends (it is closed on return). Each batch is flushed before the next is read.

    Errors writing to ``sink`` (``OSError``: a full disk...) propagate. Cancelling this task
    loses the events still waiting in ``receive``: to keep them all, close the sending side
    and let this return.
    """
    from orchestrator.diagnostics import configure

    buffer = io.StringIO()
    logger = configure(buffer, json_lines=True)
    shared = sink in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    # Other streams cannot say what is waiting: their events go one at a time.
    memory = receive if isinstance(receive, MemoryObjectReceiveStream) else None
    async with receive:
        ended = False
        while not ended:
            try:
                batch = [await receive.receive()]
            except anyio.EndOfStream:
                break
            while memory is not None and len(batch) < BATCH:
                try:
                    batch.append(memory.receive_nowait())
                except anyio.WouldBlock:
                    break
                except anyio.EndOfStream:
                    ended = True
                    break
            for event in batch:
                _record(logger, event)
            text = buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if shared:
                _write(sink, text)
            else:
                await anyio.to_thread.run_sync(_write, sink, text)


class EventLog:
    """``--log-json TARGET`` for one sweep: opened before anything runs (``OSError`` then);
    a later write error (a full disk) ends the log, said once on ``err``, never the sweep."""

    def __init__(self, target: str, err: IO[str]) -> None:
        self._open = contextlib.ExitStack()  # held from here to close()
        self.sink = self._open.enter_context(open_event_log(target))
        self.err = err
        self.failed = False

    async def record(self, receive: MemoryObjectReceiveStream[Event]) -> None:
        """Write every event of ``receive``; after a write error, drain the rest unwritten so
        that the bus never waits on a dead log."""
        try:
            await write_event_log(receive.clone(), self.sink)
        except OSError as exc:
            self._failed(exc)
        async with receive:
            async for _ in receive:
                pass

    def close(self) -> None:
        try:
            self._open.close()
        except OSError as exc:  # the last buffered records could not be written either
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        if not self.failed:
            self.failed = True
            self.err.write(
                f"orchestrator: --log-json: cannot write: {exc.strerror}; the event log stops\n"
            )
            self.err.flush()
