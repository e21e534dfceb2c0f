"""Server-Sent Events framing for the API's two live streams: the event feed and a followed log
(and, for a log read once, :func:`log_range`: its bytes a chunk at a time).

Both end cleanly rather than hang: the event feed when the hub cuts a slow follower off or
closes, a log when its run finishes or the daemon goes down. Every frame carries an id a
client can send back as ``Last-Event-ID`` to resume where it left off.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from orchestrator.daemon.hub import Frame
from orchestrator.history import run_finished
from orchestrator.logfollow import follow_log
from orchestrator.store.journal import Journal

__all__ = ["LOG_CHUNK", "event_frames", "log_frames", "log_range"]

#: Seconds of silence after which a comment line goes out, so proxies keep the stream open.
PING_AFTER = 15
#: Bytes per read of :func:`log_range`: what one reader of a log holds in memory at a time.
LOG_CHUNK = 256 * 1024


async def log_range(path: Path, offset: int) -> tuple[AsyncIterator[bytes], int]:
    """The bytes of the log at ``path`` from ``offset`` to its size now, and their number.

    The file is read a chunk at a time (in a worker thread) as the client takes them, so
    memory stays flat whatever the log's size; a missing log is empty. Logs only grow, so
    the length holds while it is read.
    """

    def open_at() -> tuple[BinaryIO | None, int]:
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed by the generator below
        except FileNotFoundError:
            return None, 0
        length = max(0, os.fstat(file.fileno()).st_size - offset)
        file.seek(offset)
        return file, length

    file, length = await anyio.to_thread.run_sync(open_at)

    async def chunks() -> AsyncIterator[bytes]:
        if file is None:
            return
        try:
            left = length
            while left > 0:
                data = await anyio.to_thread.run_sync(file.read, min(LOG_CHUNK, left))
                if not data:
                    break
                left -= len(data)
                yield data
        finally:
            file.close()

    return chunks(), length


async def event_frames(stream: MemoryObjectReceiveStream[Frame]) -> AsyncIterator[bytes]:
    """Frames as SSE, coalesced; the stream ends cleanly when the hub cuts this follower off
    (too slow: it may resume with Last-Event-ID) or closes (``event: shutdown``)."""
    yield b"retry: 1000\n\n"
    async with stream:
        while True:
            with anyio.move_on_after(PING_AFTER):
                try:
                    frame = await stream.receive()
                except anyio.EndOfStream:
                    yield b"event: shutdown\ndata: {}\n\n"
                    return
                chunks = [frame.encode()]
                # Coalesce: everything already queued goes out in the same write.
                ended = False
                while not ended:
                    try:
                        chunks.append(stream.receive_nowait().encode())
                    except anyio.WouldBlock:
                        break
                    except anyio.EndOfStream:  # cut off or closed with frames still queued
                        chunks.append(b"event: shutdown\ndata: {}\n\n")
                        ended = True
                yield b"".join(chunks)
                if ended:
                    return
                continue
            yield b": ping\n\n"


async def log_frames(
    path: Path,
    offset: int,
    updates: MemoryObjectReceiveStream[Frame],
    journal: Journal,
    run_id: str,
) -> AsyncIterator[bytes]:
    """The log from ``offset``, then every new line as it is written; ends with the run.

    :func:`follow_log` reads the file, woken by the hub's events for this run (or after a
    second); this frames its bytes as SSE. Each frame's id is the byte offset after it, so a
    client resumes with Last-Event-ID.
    """
    watch = _RunWatch(updates, journal, run_id)
    lines = _LineFramer(offset)
    async with (
        updates,
        contextlib.aclosing(
            follow_log(path, offset, finished=watch.finished, wake=watch.wake)
        ) as reads,
    ):
        async for data in reads:
            chunk = lines.frame(data)
            if chunk:
                yield chunk
        if lines.pending:
            yield b"data: %s\n\n" % lines.pending
        yield b"event: end\ndata: {}\n\n"


class _RunWatch:
    """The ``wake``/``finished`` pair :func:`follow_log` polls: wakes on the hub's events for
    the run (or after a second, in case one was missed), and calls the follow finished when
    the journal says the run ended or the hub closed (the daemon is going down)."""

    def __init__(
        self, updates: MemoryObjectReceiveStream[Frame], journal: Journal, run_id: str
    ) -> None:
        self.updates = updates
        self.journal = journal
        self.run_id = run_id
        self.closed = False

    async def finished(self) -> bool:
        if self.closed:
            return True
        await self.journal.flush()
        return run_finished(self.journal, self.run_id)

    async def wake(self) -> None:
        """Return after the next event (draining any queued behind it: one read covers them
        all), or after a second."""
        try:
            with anyio.move_on_after(1.0):
                await self.updates.receive()
                while True:
                    self.updates.receive_nowait()
        except anyio.WouldBlock:
            pass
        except anyio.EndOfStream:
            self.closed = True


class _LineFramer:
    """Cuts the bytes read into SSE frames of whole lines; a partial last line waits in
    ``pending`` for its end, so a frame's id is always the offset of a line boundary."""

    def __init__(self, offset: int) -> None:
        self.position = offset
        self.pending = b""

    def frame(self, data: bytes) -> bytes:
        """One frame of the complete lines so far (``b""`` when there are none)."""
        self.position += len(data)
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        consumed = self.position - len(self.pending)
        body = b"".join(b"data: %s\n" % line for line in lines)
        return b"id: %d\n%s\n" % (consumed, body) if lines else b""
